//! EBS volumes: records of a zone, a size and a type, attached to at most
//! one instance at a device name. Every instance gets its root volume at
//! launch (`/dev/xvda`); terminating an instance deletes the volumes
//! marked DeleteOnTermination and detaches the others. Nothing is ever
//! written to a volume: keycard keeps what the API shows.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ec2::{Filter, Instance, hex_id, validate_tags};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::state::State;
use crate::vpc::{self, DefaultNetwork};
use crate::{Keycard, now};

/// The device name of every keycard instance's root volume.
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// Root volume size when the request gives none (Amazon Linux's).
const ROOT_SIZE: u32 = 8;
/// CreateVolume's type when the request gives none (EC2 API reference).
const DEFAULT_TYPE: &str = "gp2";
/// A root volume's type when the mapping gives none.
const ROOT_TYPE: &str = "gp3";

/// Where a volume is attached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub instance_id: String,
    pub device: String,
    pub attach_time: i64,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub account: String,
    pub region: String,
    pub zone: String,
    pub zone_id: String,
    /// GiB.
    pub size: u32,
    pub volume_type: String,
    #[serde(default)]
    pub iops: Option<u32>,
    #[serde(default)]
    pub throughput: Option<u32>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub snapshot_id: String,
    pub create_time: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub attachment: Option<Attachment>,
}

impl Volume {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:volume/{}",
            self.region, self.account, self.id
        )
    }

    /// `in-use` while attached, else `available`.
    pub fn state(&self) -> &'static str {
        if self.attachment.is_some() {
            "in-use"
        } else {
            "available"
        }
    }

    /// The IOPS shown: as provisioned, or what the type gives (gp2:
    /// 3 per GiB, 100 to 16,000).
    pub fn shown_iops(&self) -> Option<u32> {
        match self.volume_type.as_str() {
            "gp2" => Some((self.size.saturating_mul(3)).clamp(100, 16000)),
            "gp3" => Some(self.iops.unwrap_or(3000)),
            "io1" | "io2" => self.iops,
            _ => None,
        }
    }
}

/// A volume a request describes: CreateVolume or one RunInstances
/// block device mapping.
#[derive(Debug, Clone, Default)]
pub struct VolumeSpec {
    pub size: Option<String>,
    pub volume_type: Option<String>,
    pub iops: Option<String>,
    pub throughput: Option<String>,
    pub snapshot_id: Option<String>,
    pub encrypted: bool,
    /// Only for mappings.
    pub delete_on_termination: Option<bool>,
}

/// Checked sizes and performance of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub size: u32,
    pub volume_type: String,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

/// EC2 error codes keycard has no variant for.
pub(crate) fn ec2_error(code: &'static str, msg: impl Into<String>) -> ServiceError {
    ServiceError::Modeled(code, 400, msg.into())
}

fn number(v: &str, field: &str) -> Result<u32> {
    v.parse::<u32>()
        .map_err(|_| invalid(format!("Invalid value '{v}' for {field}")))
}

/// An inclusive range, low and high.
type Range = (u32, u32);

/// Size range in GiB and IOPS range of each type (EBS user guide,
/// "Amazon EBS volume types").
fn limits(t: &str) -> Option<(Range, Option<Range>)> {
    Some(match t {
        "gp2" => ((1, 16384), None),
        "gp3" => ((1, 16384), Some((3000, 16000))),
        "io1" => ((4, 16384), Some((100, 64000))),
        "io2" => ((4, 65536), Some((100, 256000))),
        "st1" | "sc1" => ((125, 16384), None),
        "standard" => ((1, 1024), None),
        _ => return None,
    })
}

/// Validate a spec; `default_type` and `default_size` fill what it
/// leaves out.
pub fn check_spec(s: &VolumeSpec, default_type: &str, default_size: Option<u32>) -> Result<Shape> {
    let t = s.volume_type.as_deref().unwrap_or(default_type);
    let Some(((min, max), iops_range)) = limits(t) else {
        return Err(invalid(format!(
            "Value ({t}) for parameter volumeType is invalid. Valid values: standard, io1, io2, gp2, gp3, sc1, st1"
        )));
    };
    if let Some(id) = &s.snapshot_id {
        return Err(ServiceError::InvalidSnapshotNotFound(format!(
            "The snapshot '{id}' does not exist."
        )));
    }
    let size = match (&s.size, default_size) {
        (Some(v), _) => number(v, "size")?,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter size or snapshotId".into(),
            ));
        }
    };
    if size < min || size > max {
        return Err(invalid(format!(
            "Volume of {size}GiB is not supported for volume type {t}; the size must be between {min}GiB and {max}GiB."
        )));
    }
    let iops = match (&s.iops, iops_range) {
        (None, Some(_)) if t == "io1" || t == "io2" => {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter iops".into(),
            ));
        }
        (None, _) => None,
        (Some(_), None) => {
            return Err(ServiceError::InvalidParameterCombination(format!(
                "The parameter iops is not supported for {t} volumes."
            )));
        }
        (Some(v), Some((lo, hi))) => {
            let n = number(v, "iops")?;
            if n < lo || n > hi {
                return Err(invalid(format!(
                    "Volume iops of {n} is not supported for volume type {t}; iops must be between {lo} and {hi}."
                )));
            }
            Some(n)
        }
    };
    let throughput = match &s.throughput {
        None => None,
        Some(_) if t != "gp3" => {
            return Err(ServiceError::InvalidParameterCombination(format!(
                "The parameter throughput is not supported for {t} volumes."
            )));
        }
        Some(v) => {
            let n = number(v, "throughput")?;
            if !(125..=1000).contains(&n) {
                return Err(invalid(format!(
                    "Volume throughput of {n} is not supported; throughput must be between 125 and 1000 MiB/s."
                )));
            }
            Some(n)
        }
    };
    Ok(Shape {
        size,
        volume_type: t.to_string(),
        iops,
        throughput,
    })
}

/// `vol-` plus 8 or 17 hex digits.
pub fn valid_volume_id(id: &str) -> bool {
    id.strip_prefix("vol-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|c| c.is_ascii_hexdigit())
    })
}

/// The volume `id` of `account`: malformed, then unknown, as EC2 says.
pub fn find_volume<'a>(st: &'a State, account: &str, id: &str) -> Result<&'a Volume> {
    if !valid_volume_id(id) {
        return Err(ec2_error(
            "InvalidVolumeID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"vol-...\")"),
        ));
    }
    st.volumes
        .get(id)
        .filter(|v| v.account == account)
        .ok_or_else(|| not_found(&[id]))
}

fn not_found(ids: &[&str]) -> ServiceError {
    match ids {
        [id] => ServiceError::InvalidVolumeNotFound(format!("The volume '{id}' does not exist.")),
        _ => ServiceError::InvalidVolumeNotFound(format!(
            "The volumes '{}' do not exist.",
            ids.join(", ")
        )),
    }
}

/// Volumes attached to an instance, root first then by device name.
pub fn volumes_of<'a>(st: &'a State, instance_id: &str) -> Vec<&'a Volume> {
    let mut v: Vec<&Volume> = st
        .volumes
        .values()
        .filter(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .collect();
    v.sort_by_key(|v| {
        let d = v.attachment.as_ref().map(|a| a.device.clone());
        (d.as_deref() != Some(ROOT_DEVICE), d)
    });
    v
}

/// `/dev/sdf`, `/dev/xvdba`, `xvdh`: EC2's Linux device names.
pub fn valid_device(d: &str) -> bool {
    let name = d.strip_prefix("/dev/").unwrap_or(d);
    let letters = name
        .strip_prefix("xvd")
        .or_else(|| name.strip_prefix("sd"))
        .or_else(|| name.strip_prefix("hd"));
    letters.is_some_and(|l| {
        let (head, digits) = l.split_at(l.find(|c: char| c.is_ascii_digit()).unwrap_or(l.len()));
        (1..=2).contains(&head.len())
            && head.bytes().all(|c| c.is_ascii_lowercase())
            && digits.bytes().all(|c| c.is_ascii_digit())
            && digits.len() <= 2
    })
}

/// A volume a new instance launches with at `device`.
fn launch_volume(i: &Instance, shape: &Shape, spec: &VolumeSpec, device: &str) -> Volume {
    let zone = i.availability_zone();
    Volume {
        id: hex_id("vol-"),
        account: i.account.clone(),
        region: i.region.clone(),
        zone_id: zone_id_of(&i.region, &zone),
        zone,
        size: shape.size,
        volume_type: shape.volume_type.clone(),
        iops: shape.iops,
        throughput: shape.throughput,
        encrypted: spec.encrypted,
        snapshot_id: String::new(),
        create_time: i.launch_time,
        tags: Vec::new(),
        attachment: Some(Attachment {
            instance_id: i.id.clone(),
            device: device.to_string(),
            attach_time: i.launch_time,
            delete_on_termination: spec.delete_on_termination.unwrap_or(true),
        }),
    }
}

/// A RunInstances mapping's root volume shape (defaults: 8 GiB gp3).
pub fn check_root(spec: &VolumeSpec) -> Result<Shape> {
    check_spec(spec, ROOT_TYPE, Some(ROOT_SIZE))
}

/// RunInstances' mappings: valid device names, each once, each volume
/// valid (the root defaults to 8 GiB gp3, others need a size).
pub fn check_mappings(list: &[(String, VolumeSpec)]) -> Result<Vec<Shape>> {
    let mut seen = BTreeSet::new();
    list.iter()
        .map(|(device, spec)| {
            if !valid_device(device) {
                return Err(ec2_error(
                    "InvalidBlockDeviceMapping",
                    format!("Invalid device name {device}"),
                ));
            }
            if !seen.insert(short_device(device)) {
                return Err(ec2_error(
                    "InvalidBlockDeviceMapping",
                    format!("The device '{device}' is used in more than one block-device mapping"),
                ));
            }
            if short_device(device) == short_device(ROOT_DEVICE) {
                check_root(spec)
            } else {
                check_spec(spec, DEFAULT_TYPE, None)
            }
        })
        .collect()
}

/// The volumes new instances launch with: the root one (as its mapping
/// says, else the defaults) and one per other mapping.
pub fn launch_volumes(
    instances: &[Instance],
    list: &[(String, VolumeSpec)],
) -> Result<Vec<Change>> {
    let shapes = check_mappings(list)?;
    let root_given = list
        .iter()
        .any(|(d, _)| short_device(d) == short_device(ROOT_DEVICE));
    let default_root = VolumeSpec::default();
    let mut out = Vec::new();
    for i in instances {
        if !root_given {
            let shape = check_root(&default_root)?;
            out.push(Change::Put(Entity::Volume(launch_volume(
                i,
                &shape,
                &default_root,
                ROOT_DEVICE,
            ))));
        }
        for ((device, spec), shape) in list.iter().zip(&shapes) {
            out.push(Change::Put(Entity::Volume(launch_volume(
                i, shape, spec, device,
            ))));
        }
    }
    Ok(out)
}

/// The zone id AWS pairs with a zone name in `region`.
fn zone_id_of(region: &str, zone: &str) -> String {
    DefaultNetwork::new("000000000000", region)
        .subnets
        .iter()
        .find(|s| s.zone == zone)
        .map(|s| s.zone_id.clone())
        .unwrap_or_default()
}

/// What terminating `instance_id` does to its volumes: DeleteOnTermination
/// ones go, the others are detached.
pub fn on_terminate(st: &State, instance_id: &str) -> Vec<Change> {
    volumes_of(st, instance_id)
        .into_iter()
        .map(|v| {
            if v.attachment
                .as_ref()
                .is_some_and(|a| a.delete_on_termination)
            {
                Change::Delete("volume", v.id.clone())
            } else {
                let mut n = v.clone();
                n.attachment = None;
                Change::Put(Entity::Volume(n))
            }
        })
        .collect()
}

pub const VOLUME_FILTERS: &[&str] = &[
    "volume-id",
    "volume-type",
    "size",
    "status",
    "availability-zone",
    "create-time",
    "encrypted",
    "snapshot-id",
    "multi-attach-enabled",
    "attachment.instance-id",
    "attachment.device",
    "attachment.status",
    "attachment.attach-time",
    "attachment.delete-on-termination",
    "tag-key",
    "tag-value",
];

pub fn volume_facts(v: &Volume) -> vpc::Facts {
    let flag = |b: bool| if b { "true" } else { "false" }.to_string();
    let mut f: vpc::Facts = vec![
        ("volume-id", vec![v.id.clone()]),
        ("volume-type", vec![v.volume_type.clone()]),
        ("size", vec![v.size.to_string()]),
        ("status", vec![v.state().into()]),
        ("availability-zone", vec![v.zone.clone()]),
        ("create-time", vec![crate::sts::iso8601(v.create_time)]),
        ("encrypted", vec![flag(v.encrypted)]),
        ("snapshot-id", vec![v.snapshot_id.clone()]),
        ("multi-attach-enabled", vec![flag(false)]),
    ];
    if let Some(a) = &v.attachment {
        f.extend([
            ("attachment.instance-id", vec![a.instance_id.clone()]),
            ("attachment.device", vec![a.device.clone()]),
            ("attachment.status", vec!["attached".into()]),
            (
                "attachment.attach-time",
                vec![crate::sts::iso8601(a.attach_time)],
            ),
            (
                "attachment.delete-on-termination",
                vec![flag(a.delete_on_termination)],
            ),
        ]);
    }
    f
}

/// CreateVolume's input.
#[derive(Debug, Clone, Default)]
pub struct CreateVolumeInput {
    pub zone: Option<String>,
    pub zone_id: Option<String>,
    pub spec: VolumeSpec,
    pub tags: Vec<Tag>,
}

/// The zone (and its id) a CreateVolume names.
fn resolve_zone(
    account: &str,
    region: &str,
    input: &CreateVolumeInput,
) -> Result<(String, String)> {
    let net = DefaultNetwork::new(account, region);
    let found = match (&input.zone, &input.zone_id) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::InvalidParameterCombination(
                "Only one of AvailabilityZone or AvailabilityZoneId can be specified".into(),
            ));
        }
        (Some(z), None) => net.subnets.iter().find(|s| &s.zone == z).ok_or_else(|| {
            ec2_error(
                "InvalidZone.NotFound",
                format!("The zone '{z}' does not exist."),
            )
        })?,
        (None, Some(z)) => net
            .subnets
            .iter()
            .find(|s| &s.zone_id == z)
            .ok_or_else(|| {
                ec2_error(
                    "InvalidZone.NotFound",
                    format!("The zone ID '{z}' does not exist."),
                )
            })?,
        (None, None) => {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter AvailabilityZone".into(),
            ));
        }
    };
    Ok((found.zone.clone(), found.zone_id.clone()))
}

/// Validate a CreateVolume request: the volume it would make.
pub fn check_create(account: &str, region: &str, input: &CreateVolumeInput) -> Result<Volume> {
    let (zone, zone_id) = resolve_zone(account, region, input)?;
    let shape = check_spec(&input.spec, DEFAULT_TYPE, None)?;
    validate_tags(&input.tags)?;
    Ok(Volume {
        id: hex_id("vol-"),
        account: account.to_string(),
        region: region.to_string(),
        zone,
        zone_id,
        size: shape.size,
        volume_type: shape.volume_type,
        iops: shape.iops,
        throughput: shape.throughput,
        encrypted: input.spec.encrypted,
        snapshot_id: String::new(),
        create_time: now(),
        tags: input.tags.clone(),
        attachment: None,
    })
}

/// The instance a volume may attach to: live, and in the volume's zone.
fn check_attach(st: &State, v: &Volume, i: &Instance, device: &str) -> Result<()> {
    if !valid_device(device) {
        return Err(invalid(format!(
            "Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name."
        )));
    }
    if let Some(a) = &v.attachment {
        return Err(ec2_error(
            "VolumeInUse",
            format!(
                "{} is already attached to an instance ({})",
                v.id, a.instance_id
            ),
        ));
    }
    if !matches!(i.state.as_str(), "running" | "stopped") {
        return Err(ServiceError::IncorrectState(format!(
            "Instance '{}' is not 'running'.",
            i.id
        )));
    }
    if i.availability_zone() != v.zone {
        return Err(ec2_error(
            "InvalidVolume.ZoneMismatch",
            format!(
                "The volume '{}' is not in the same availability zone as instance '{}'",
                v.id, i.id
            ),
        ));
    }
    let taken: BTreeSet<String> = volumes_of(st, &i.id)
        .iter()
        .filter_map(|x| x.attachment.as_ref().map(|a| short_device(&a.device)))
        .collect();
    if taken.contains(&short_device(device)) {
        return Err(invalid(format!(
            "Attachment point {device} is already in use"
        )));
    }
    Ok(())
}

/// `/dev/sdf` and `sdf` name the same attachment point.
fn short_device(d: &str) -> String {
    d.strip_prefix("/dev/").unwrap_or(d).to_string()
}

/// What a DetachVolume request detaches: the volume's attachment, which
/// must match the instance and device when given.
fn check_detach<'a>(
    st: &State,
    v: &'a Volume,
    instance_id: Option<&str>,
    device: Option<&str>,
    force: bool,
) -> Result<&'a Attachment> {
    let Some(a) = &v.attachment else {
        return Err(ServiceError::IncorrectState(format!(
            "Volume '{}' is in the 'available' state.",
            v.id
        )));
    };
    if instance_id.is_some_and(|i| i != a.instance_id) || device.is_some_and(|d| d != a.device) {
        return Err(ec2_error(
            "InvalidAttachment.NotFound",
            format!(
                "Attachment point {} is not attached to volume {}",
                device.unwrap_or(&a.device),
                v.id
            ),
        ));
    }
    let running = st
        .instances
        .get(&a.instance_id)
        .is_some_and(|i| i.state == "running");
    if a.device == ROOT_DEVICE && running && !force {
        return Err(ServiceError::IncorrectState(format!(
            "Unable to detach root volume '{}' from instance '{}'",
            v.id, a.instance_id
        )));
    }
    Ok(a)
}

impl Keycard {
    /// Volumes of `account` in `region`, by id (all must exist).
    pub fn volumes(&self, account: &str, region: &str, ids: &[String]) -> Result<Vec<Volume>> {
        let st = self.state();
        for id in ids {
            find_volume(&st, account, id)?;
        }
        Ok(st
            .volumes
            .values()
            .filter(|v| v.account == account && v.region == region)
            .filter(|v| ids.is_empty() || ids.contains(&v.id))
            .cloned()
            .collect())
    }

    /// One volume, by id.
    pub fn volume(&self, account: &str, id: &str) -> Result<Volume> {
        find_volume(&self.state(), account, id).cloned()
    }

    /// The volumes attached to each of `ids`, root first.
    pub fn instance_volumes(&self, ids: &[&str]) -> Vec<(String, Vec<Volume>)> {
        let st = self.state();
        ids.iter()
            .map(|id| {
                let v = volumes_of(&st, id).into_iter().cloned().collect();
                (id.to_string(), v)
            })
            .collect()
    }

    pub async fn create_volume(&self, v: Volume) -> Result<Volume> {
        self.mutate(|_| Ok((vec![Change::Put(Entity::Volume(v.clone()))], v.clone())))
            .await
    }

    pub async fn attach_volume(
        &self,
        account: &str,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<Volume> {
        self.mutate(|st| {
            let v = find_volume(st, account, volume_id)?;
            let i = crate::ec2::lookup_one(st, account, instance_id)?;
            check_attach(st, v, i, device)?;
            let mut n = v.clone();
            n.attachment = Some(Attachment {
                instance_id: i.id.clone(),
                device: device.to_string(),
                attach_time: now(),
                delete_on_termination: false,
            });
            Ok((vec![Change::Put(Entity::Volume(n.clone()))], n))
        })
        .await
    }

    /// Detach; the volume as it was (with its attachment) comes back.
    pub async fn detach_volume(
        &self,
        account: &str,
        volume_id: &str,
        instance_id: Option<&str>,
        device: Option<&str>,
        force: bool,
    ) -> Result<Volume> {
        self.mutate(|st| {
            let v = find_volume(st, account, volume_id)?;
            check_detach(st, v, instance_id, device, force)?;
            let mut n = v.clone();
            n.attachment = None;
            Ok((vec![Change::Put(Entity::Volume(n))], v.clone()))
        })
        .await
    }

    pub async fn delete_volume(&self, account: &str, volume_id: &str) -> Result<()> {
        self.mutate(|st| {
            let v = find_volume(st, account, volume_id)?;
            if let Some(a) = &v.attachment {
                return Err(ec2_error(
                    "VolumeInUse",
                    format!("Volume {} is currently attached to {}", v.id, a.instance_id),
                ));
            }
            Ok((vec![Change::Delete("volume", v.id.clone())], ()))
        })
        .await
    }
}

/// Filter volumes (unknown names refused).
pub fn select_volumes(items: Vec<Volume>, filters: &[Filter]) -> Result<Vec<Volume>> {
    vpc::select_tagged(items, filters, VOLUME_FILTERS, volume_facts, |v| &v.tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: Option<&str>, size: Option<&str>, iops: Option<&str>) -> VolumeSpec {
        VolumeSpec {
            volume_type: t.map(str::to_string),
            size: size.map(str::to_string),
            iops: iops.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn specs_follow_ebs_limits() {
        let ok = check_spec(&spec(None, Some("10"), None), "gp2", None).unwrap();
        assert_eq!((ok.size, ok.volume_type.as_str()), (10, "gp2"));
        assert!(check_spec(&spec(None, None, None), "gp2", None).is_err());
        assert!(check_spec(&spec(Some("gp2"), Some("20000"), None), "gp2", None).is_err());
        assert!(check_spec(&spec(Some("gp2"), Some("10"), Some("300")), "gp2", None).is_err());
        assert!(check_spec(&spec(Some("io1"), Some("10"), None), "gp2", None).is_err());
        assert!(check_spec(&spec(Some("io1"), Some("10"), Some("500")), "gp2", None).is_ok());
        assert!(check_spec(&spec(Some("st1"), Some("10"), None), "gp2", None).is_err());
        assert!(check_spec(&spec(Some("nope"), Some("10"), None), "gp2", None).is_err());
        assert!(check_spec(&spec(None, Some("x"), None), "gp2", None).is_err());
    }

    #[test]
    fn device_names() {
        for ok in ["/dev/sdf", "/dev/xvdba", "xvdh", "/dev/sdf1"] {
            assert!(valid_device(ok), "{ok}");
        }
        for bad in [
            "",
            "/dev/",
            "/dev/nvme0n1",
            "/dev/sdABC",
            "foo",
            "/dev/sdf123",
        ] {
            assert!(!valid_device(bad), "{bad}");
        }
        assert!(valid_volume_id("vol-0123456789abcdef0"));
        assert!(!valid_volume_id("vol-xyz"));
    }
}
