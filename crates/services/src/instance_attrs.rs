//! Instance attributes (DescribeInstanceAttribute, ModifyInstanceAttribute)
//! and the calls that honour them: TerminateInstances refuses while
//! `disableApiTermination` is set, StopInstances while `disableApiStop`
//! is. Type and user data change only while the instance is stopped, as
//! on AWS; the metadata service serves the new user data at once.

use serde::{Deserialize, Serialize};

use crate::ec2::{Instance, StateOp, lookup_one, valid_instance_type, validate_user_data};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity};
use crate::network::GroupRef;
use crate::state::State;
use crate::volume::{ec2_error, volumes_of};
use crate::{Keycard, network, vpc};

/// The attributes keycard keeps per instance beyond type and user data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InstanceAttrs {
    pub disable_api_termination: bool,
    pub disable_api_stop: bool,
    /// `stop` | `terminate`
    pub shutdown_behavior: String,
    pub source_dest_check: bool,
    pub ebs_optimized: bool,
    pub ena_support: bool,
    /// `simple` once set.
    pub sriov_net_support: Option<String>,
    /// `standard` | `unlimited` (burstable types only; unset: the type's
    /// default).
    pub cpu_credits: Option<String>,
    /// The primary network interface's description and whether it goes
    /// with the instance (ModifyNetworkInterfaceAttribute: eni.rs).
    pub eni_description: String,
    pub eni_delete_on_termination: bool,
}

impl Default for InstanceAttrs {
    fn default() -> Self {
        InstanceAttrs {
            disable_api_termination: false,
            disable_api_stop: false,
            shutdown_behavior: "stop".into(),
            source_dest_check: true,
            ebs_optimized: false,
            ena_support: true,
            sriov_net_support: None,
            cpu_credits: None,
            eni_description: String::new(),
            eni_delete_on_termination: true,
        }
    }
}

/// `stop` or `terminate`, as InstanceInitiatedShutdownBehavior takes.
pub fn check_shutdown_behavior(v: &str) -> Result<()> {
    if v == "stop" || v == "terminate" {
        Ok(())
    } else {
        Err(ServiceError::InvalidParameterValue(format!(
            "Value ({v}) for parameter instanceInitiatedShutdownBehavior is invalid. Valid values: stop, terminate"
        )))
    }
}

/// `standard` or `unlimited`, as CpuCredits takes.
pub fn check_cpu_credits(v: &str) -> Result<()> {
    if v == "standard" || v == "unlimited" {
        Ok(())
    } else {
        Err(ServiceError::InvalidParameterValue(format!(
            "Value ({v}) for parameter CpuCredits is invalid. Valid values: standard, unlimited"
        )))
    }
}

/// Whether an instance type earns CPU credits (T family).
pub fn is_burstable(instance_type: &str) -> bool {
    ["t2.", "t3.", "t3a.", "t4g."]
        .iter()
        .any(|f| instance_type.starts_with(f))
}

/// The credit option an instance shows: as set, else its family's
/// default (T2 standard, later T families unlimited).
pub fn cpu_credits(i: &Instance) -> Option<String> {
    if !is_burstable(&i.instance_type) {
        return None;
    }
    Some(i.attrs.cpu_credits.clone().unwrap_or_else(|| {
        if i.instance_type.starts_with("t2.") {
            "standard".into()
        } else {
            "unlimited".into()
        }
    }))
}

/// One ModifyInstanceAttribute change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrChange {
    InstanceType(String),
    /// Base64, as the request carries it.
    UserData(String),
    DisableApiTermination(bool),
    DisableApiStop(bool),
    ShutdownBehavior(String),
    SourceDestCheck(bool),
    EbsOptimized(bool),
    EnaSupport(bool),
    SriovNetSupport(String),
    Groups(Vec<String>),
    /// DeleteOnTermination per attached device.
    DeleteOnTermination(Vec<(String, bool)>),
}

impl AttrChange {
    /// Changes that need the instance stopped (EC2 user guide, "Modify a
    /// stopped instance").
    fn needs_stopped(&self) -> bool {
        matches!(
            self,
            AttrChange::InstanceType(_)
                | AttrChange::UserData(_)
                | AttrChange::EbsOptimized(_)
                | AttrChange::EnaSupport(_)
                | AttrChange::SriovNetSupport(_)
        )
    }

    /// The attribute name, as AWS's messages say it.
    pub fn name(&self) -> &'static str {
        match self {
            AttrChange::InstanceType(_) => "instanceType",
            AttrChange::UserData(_) => "userData",
            AttrChange::DisableApiTermination(_) => "disableApiTermination",
            AttrChange::DisableApiStop(_) => "disableApiStop",
            AttrChange::ShutdownBehavior(_) => "instanceInitiatedShutdownBehavior",
            AttrChange::SourceDestCheck(_) => "sourceDestCheck",
            AttrChange::EbsOptimized(_) => "ebsOptimized",
            AttrChange::EnaSupport(_) => "enaSupport",
            AttrChange::SriovNetSupport(_) => "sriovNetSupport",
            AttrChange::Groups(_) => "groupSet",
            AttrChange::DeleteOnTermination(_) => "blockDeviceMapping",
        }
    }
}

/// Check the value of a change on its own.
pub fn check_change(c: &AttrChange) -> Result<()> {
    match c {
        AttrChange::InstanceType(t) if !valid_instance_type(t) => Err(
            ServiceError::InvalidParameterValue(format!("Invalid value '{t}' for InstanceType.")),
        ),
        AttrChange::UserData(u) => validate_user_data(u),
        AttrChange::ShutdownBehavior(v) => check_shutdown_behavior(v),
        AttrChange::SriovNetSupport(v) if v != "simple" => {
            Err(ServiceError::InvalidParameterValue(format!(
                "Value ({v}) for parameter sriovNetSupport is invalid. Valid values: simple"
            )))
        }
        AttrChange::Groups(g) if g.is_empty() => Err(ServiceError::MissingParameter(
            "The request must contain the parameter groupId".into(),
        )),
        _ => Ok(()),
    }
}

/// The instance's groups after a Groups change: each must exist and be
/// in the instance's VPC.
fn new_groups(st: &State, i: &Instance, ids: &[String]) -> Result<Vec<GroupRef>> {
    let Some(eni) = vpc::interface_of(i) else {
        return Err(not_valid_state(i));
    };
    ids.iter()
        .map(|id| {
            let g = network::find_group(st, &i.account, &i.region, id)?;
            if g.vpc_id != eni.vpc_id {
                return Err(ServiceError::InvalidParameter(format!(
                    "Security group {} and subnet {} belong to different networks.",
                    g.id, eni.subnet_id
                )));
            }
            Ok(GroupRef {
                id: g.id,
                name: g.name,
            })
        })
        .collect()
}

fn not_valid_state(i: &Instance) -> ServiceError {
    ServiceError::IncorrectInstanceState(format!(
        "The instance '{}' is not in a valid state for this operation.",
        i.id
    ))
}

/// The records a change writes: the instance, and for DeleteOnTermination
/// its volumes.
fn plan(st: &State, i: &Instance, c: &AttrChange) -> Result<Vec<Change>> {
    if i.is_terminated() || i.state == "shutting-down" {
        return Err(not_valid_state(i));
    }
    if c.needs_stopped() && i.state != "stopped" {
        return Err(ServiceError::IncorrectInstanceState(format!(
            "The instance '{}' is not in the 'stopped' state.",
            i.id
        )));
    }
    let mut n = i.clone();
    let a = &mut n.attrs;
    match c {
        AttrChange::InstanceType(t) => n.instance_type = t.clone(),
        AttrChange::UserData(u) => n.user_data = Some(u.clone()).filter(|u| !u.is_empty()),
        AttrChange::DisableApiTermination(b) => a.disable_api_termination = *b,
        AttrChange::DisableApiStop(b) => a.disable_api_stop = *b,
        AttrChange::ShutdownBehavior(v) => a.shutdown_behavior = v.clone(),
        AttrChange::SourceDestCheck(b) => a.source_dest_check = *b,
        AttrChange::EbsOptimized(b) => a.ebs_optimized = *b,
        AttrChange::EnaSupport(b) => a.ena_support = *b,
        AttrChange::SriovNetSupport(v) => a.sriov_net_support = Some(v.clone()),
        AttrChange::Groups(ids) => {
            let groups = new_groups(st, i, ids)?;
            let mut net = match &i.network {
                Some(x) => x.clone(),
                None => vpc::DefaultNetwork::new(&i.account, &i.region)
                    .instance_network()
                    .ok_or_else(|| not_valid_state(i))?,
            };
            net.groups = groups;
            n.network = Some(net);
        }
        AttrChange::DeleteOnTermination(list) => return delete_on_termination(st, i, list),
    }
    Ok(vec![Change::Put(Entity::Instance(n))])
}

fn delete_on_termination(st: &State, i: &Instance, list: &[(String, bool)]) -> Result<Vec<Change>> {
    let vols = volumes_of(st, &i.id);
    let mut out = Vec::new();
    for (device, flag) in list {
        let v = vols
            .iter()
            .find(|v| v.attachment.as_ref().is_some_and(|a| &a.device == device))
            .ok_or_else(|| {
                ec2_error(
                    "InvalidInstanceAttributeValue",
                    format!("No device is currently mapped at {device}"),
                )
            })?;
        let mut n = (*v).clone();
        if let Some(a) = &mut n.attachment {
            a.delete_on_termination = *flag;
        }
        out.push(Change::Put(Entity::Volume(n)));
    }
    Ok(out)
}

/// Whether a state change is allowed by the instance's protection
/// attributes.
pub fn check_protection(i: &Instance, op: StateOp) -> Result<()> {
    let blocked = match op {
        StateOp::Terminate => i
            .attrs
            .disable_api_termination
            .then_some(("terminated", "disableApiTermination")),
        StateOp::Stop => i
            .attrs
            .disable_api_stop
            .then_some(("stopped", "disableApiStop")),
        StateOp::Start => None,
    };
    match blocked {
        Some((verb, attr)) if !i.is_terminated() => Err(ec2_error(
            "OperationNotPermitted",
            format!(
                "The instance '{}' may not be {verb}. Modify its '{attr}' instance attribute and try again.",
                i.id
            ),
        )),
        _ => Ok(()),
    }
}

impl Keycard {
    /// ModifyInstanceAttribute: one attribute, validated, then written.
    pub async fn modify_instance_attribute(
        &self,
        account: &str,
        instance_id: &str,
        change: &AttrChange,
    ) -> Result<()> {
        check_change(change)?;
        self.mutate(|st| {
            let i = lookup_one(st, account, instance_id)?;
            Ok((plan(st, i, change)?, ()))
        })
        .await
    }

    /// RebootInstances: only running instances reboot; nothing changes.
    pub fn check_reboot(&self, account: &str, ids: &[String]) -> Result<()> {
        let st = self.state();
        for id in ids {
            let i = lookup_one(&st, account, id)?;
            if !i.is_running() {
                return Err(ServiceError::IncorrectInstanceState(format!(
                    "The instance '{}' is not in a state from which it can be rebooted.",
                    i.id
                )));
            }
        }
        Ok(())
    }

    /// ModifyInstanceCreditSpecification for burstable instances.
    pub async fn set_cpu_credits(
        &self,
        account: &str,
        instance_id: &str,
        credits: &str,
    ) -> Result<()> {
        check_cpu_credits(credits)?;
        self.mutate(|st| {
            let i = lookup_one(st, account, instance_id)?;
            if !is_burstable(&i.instance_type) {
                return Err(ec2_error(
                    "InstanceCreditSpecification.NotSupported",
                    format!(
                        "The instance {} does not support credit specifications",
                        i.id
                    ),
                ));
            }
            if i.is_terminated() {
                return Err(not_valid_state(i));
            }
            let mut n = i.clone();
            n.attrs.cpu_credits = Some(credits.to_string());
            Ok((vec![Change::Put(Entity::Instance(n))], ()))
        })
        .await
    }
}
