//! EBS volumes (crates/services/src/volume.rs): CreateVolume,
//! AttachVolume, DetachVolume, DeleteVolume and DescribeVolumes. A
//! volume is authorized on its own ARN with its tags, size, type and zone
//! as keys; attach and detach also on the instance's ARN, as AWS does.

use keycard_proto::query::Params;
use keycard_proto::xml::XmlWriter;
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::ec2;
use keycard_services::volume::{self, Attachment, CreateVolumeInput, Volume, VolumeSpec};

use crate::Req;
use crate::ec2::{bool_param, dry_run_ok, filters, ids, iso8601_ms, required, tag_set};
use crate::ec2_network::{flag, respond};

type Out = Result<String, ServiceError>;

const NAMES: &[&str] = &[
    "CreateVolume",
    "AttachVolume",
    "DetachVolume",
    "DeleteVolume",
    "DescribeVolumes",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "CreateVolume" => create(req, p, dry).await,
        "AttachVolume" => attach(req, p, dry).await,
        "DetachVolume" => detach(req, p, dry).await,
        "DeleteVolume" => delete(req, p, dry).await,
        "DescribeVolumes" => describe(req, p, dry),
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// The `Ebs` part of a block device mapping, or CreateVolume's fields.
pub(crate) fn volume_spec(p: &Params) -> Result<VolumeSpec, ServiceError> {
    let dot = match p.get("DeleteOnTermination") {
        None => None,
        Some(_) => Some(bool_param(p, "DeleteOnTermination")?),
    };
    Ok(VolumeSpec {
        size: p
            .get("Size")
            .or_else(|| p.get("VolumeSize"))
            .map(str::to_string),
        volume_type: p.get("VolumeType").map(str::to_string),
        iops: p.get("Iops").map(str::to_string),
        throughput: p.get("Throughput").map(str::to_string),
        snapshot_id: p.get("SnapshotId").map(str::to_string),
        encrypted: bool_param(p, "Encrypted")?,
        delete_on_termination: dot,
    })
}

/// RunInstances' `BlockDeviceMapping.N` entries with an `Ebs` part.
pub(crate) fn block_devices(p: &Params) -> Result<Vec<(String, VolumeSpec)>, ServiceError> {
    let mut out = Vec::new();
    for m in p.structs("BlockDeviceMapping") {
        let device = m.get("DeviceName").unwrap_or("").to_string();
        let ebs = m.sub("Ebs");
        if m.get("NoDevice").is_some() || m.get("VirtualName").is_some() {
            continue;
        }
        out.push((device, volume_spec(&ebs)?));
    }
    Ok(out)
}

impl Req {
    /// An action on a volume, its facts as keys of this check alone.
    pub(crate) fn authorize_volume(
        &mut self,
        action: &str,
        v: &Volume,
    ) -> Result<(), ServiceError> {
        self.audit
            .resources
            .push((v.arn(), "AWS::EC2::Volume".into()));
        let c = Check::new(action, v.arn())
            .account(v.account.clone())
            .tags(Some("ec2"), &v.tags)
            .key("ec2:AvailabilityZone", v.zone.clone())
            .key("ec2:VolumeSize", v.size.to_string())
            .key("ec2:VolumeType", v.volume_type.clone())
            .key("ec2:Encrypted", v.encrypted.to_string())
            .key("ec2:Region", self.region.clone());
        self.check(c)
    }
}

fn create_input(p: &Params) -> Result<CreateVolumeInput, ServiceError> {
    let mut tags = Vec::new();
    for spec in p.structs("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or("");
        if rt != "volume" {
            return Err(ServiceError::InvalidParameterValue(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        tags.extend(crate::ec2::tags(spec.structs("Tag"))?);
    }
    Ok(CreateVolumeInput {
        zone: p.get("AvailabilityZone").map(str::to_string),
        zone_id: p.get("AvailabilityZoneId").map(str::to_string),
        spec: volume_spec(p)?,
        tags,
    })
}

async fn create(req: &mut Req, p: &Params, dry: bool) -> Out {
    let input = create_input(p)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let v = volume::check_create(&account, &region, &input)?;
    req.request_tag_list(&v.tags);
    let any = req.ec2_resource("volume", "*");
    req.check(
        Check::new("ec2:CreateVolume", any.clone())
            .account(account.clone())
            .key("ec2:AvailabilityZone", v.zone.clone())
            .key("ec2:VolumeSize", v.size.to_string())
            .key("ec2:VolumeType", v.volume_type.clone())
            .key("ec2:Encrypted", v.encrypted.to_string())
            .key("ec2:Region", region.clone()),
    )?;
    if !v.tags.is_empty() {
        req.check(
            Check::new("ec2:CreateTags", any)
                .account(account)
                .key("ec2:CreateAction", "CreateVolume"),
        )?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let v = req.kc.create_volume(v).await?;
    req.audit
        .resources
        .push((v.arn(), "AWS::EC2::Volume".into()));
    req.audit.response =
        serde_json::json!({"volumeId": v.id, "size": v.size, "volumeType": v.volume_type});
    Ok(respond(req, |w| volume_fields(w, &v, "creating")))
}

async fn attach(req: &mut Req, p: &Params, dry: bool) -> Out {
    let device = required(p, "Device")?.to_string();
    let iid = required(p, "InstanceId")?.to_string();
    let vid = required(p, "VolumeId")?.to_string();
    let account = req.caller.account.clone();
    let v = req.kc.volume(&account, &vid)?;
    req.authorize_instance_id("ec2:AttachVolume", &iid)?;
    req.authorize_volume("ec2:AttachVolume", &v)?;
    if dry {
        return Err(dry_run_ok());
    }
    let v = req.kc.attach_volume(&account, &vid, &iid, &device).await?;
    Ok(respond(req, |w| attachment_fields(w, &v, "attaching")))
}

async fn detach(req: &mut Req, p: &Params, dry: bool) -> Out {
    let vid = required(p, "VolumeId")?.to_string();
    let account = req.caller.account.clone();
    let v = req.kc.volume(&account, &vid)?;
    let force = bool_param(p, "Force")?;
    if let Some(a) = &v.attachment {
        let iid = a.instance_id.clone();
        req.authorize_instance_id("ec2:DetachVolume", &iid)?;
    }
    req.authorize_volume("ec2:DetachVolume", &v)?;
    if dry {
        return Err(dry_run_ok());
    }
    let was = req
        .kc
        .detach_volume(&account, &vid, p.get("InstanceId"), p.get("Device"), force)
        .await?;
    Ok(respond(req, |w| attachment_fields(w, &was, "detaching")))
}

async fn delete(req: &mut Req, p: &Params, dry: bool) -> Out {
    let vid = required(p, "VolumeId")?.to_string();
    let account = req.caller.account.clone();
    let v = req.kc.volume(&account, &vid)?;
    req.authorize_volume("ec2:DeleteVolume", &v)?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.delete_volume(&account, &vid).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

fn describe(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let wanted = ids(p, "VolumeId");
    if !wanted.is_empty() && p.contains("MaxResults") {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter volumeSet cannot be used with the parameter maxResults".into(),
        ));
    }
    let limit = ec2::max_results(p.get("MaxResults"), 5, 500)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    let items = req.kc.volumes(&req.caller.account, &req.region, &wanted)?;
    let items = volume::select_volumes(items, &filters(p))?;
    let (items, next) =
        keycard_services::vpc::page(items, after.as_deref(), limit, |v: &Volume| &v.id);
    Ok(respond(req, |w| {
        w.start("volumeSet");
        for v in &items {
            w.start("item");
            volume_fields(w, v, v.state());
            w.end("item");
        }
        w.end("volumeSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

/// A volume's fields, as CreateVolume and DescribeVolumes show them.
fn volume_fields(w: &mut XmlWriter, v: &Volume, state: &str) {
    w.elem("volumeId", &v.id)
        .elem_display("size", v.size)
        .elem("snapshotId", &v.snapshot_id)
        .elem("availabilityZone", &v.zone)
        .elem("availabilityZoneId", &v.zone_id)
        .elem("status", state)
        .elem("createTime", &iso8601_ms(v.create_time))
        .start("attachmentSet");
    if let Some(a) = &v.attachment {
        w.start("item");
        attachment_xml(w, &v.id, a, "attached");
        w.end("item");
    }
    w.end("attachmentSet").elem("volumeType", &v.volume_type);
    if let Some(n) = v.shown_iops() {
        w.elem_display("iops", n);
    }
    if v.volume_type == "gp3" {
        w.elem_display("throughput", v.throughput.unwrap_or(125));
    }
    w.elem("encrypted", flag(v.encrypted))
        .elem("multiAttachEnabled", "false");
    tag_set(w, &v.tags);
}

/// AttachVolume's and DetachVolume's answer: the attachment, in motion.
fn attachment_fields(w: &mut XmlWriter, v: &Volume, status: &str) {
    if let Some(a) = &v.attachment {
        attachment_xml(w, &v.id, a, status);
    }
}

/// One attachment's fields (VolumeAttachment).
fn attachment_xml(w: &mut XmlWriter, volume_id: &str, a: &Attachment, status: &str) {
    w.elem("volumeId", volume_id)
        .elem("instanceId", &a.instance_id)
        .elem("device", &a.device)
        .elem("status", status)
        .elem("attachTime", &iso8601_ms(a.attach_time))
        .elem("deleteOnTermination", flag(a.delete_on_termination));
}

/// An instance's `blockDeviceMapping`, from its attached volumes.
pub(crate) fn instance_mappings_xml(w: &mut XmlWriter, tag: &str, volumes: &[Volume]) {
    w.start(tag);
    for v in volumes {
        let Some(a) = &v.attachment else { continue };
        w.start("item")
            .elem("deviceName", &a.device)
            .start("ebs")
            .elem("volumeId", &v.id)
            .elem("status", "attached")
            .elem("attachTime", &iso8601_ms(a.attach_time))
            .elem("deleteOnTermination", flag(a.delete_on_termination))
            .end("ebs")
            .end("item");
    }
    w.end(tag);
}
