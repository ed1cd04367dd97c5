//! The EC2 launch path's own resources: key pairs, images and launch
//! templates (crates/services/src/keypair.rs, image.rs, template.rs).
//! Creates are authorized on `<kind>/*` with `aws:RequestTag/…` (and
//! `ec2:CreateTags` when tagging), changes on the resource's ARN with its
//! tags, Describe calls on `*`, as AWS does.

use keycard_proto::query::Params;
use keycard_proto::xml::XmlWriter;
use keycard_services::ServiceError;
use keycard_services::auth::{Check, ResourcePolicy};
use keycard_services::image::{Image, ImageQuery, RegisterInput};
use keycard_services::keypair::{CreateKey, KeyPair};
use keycard_services::template::{
    LaunchTemplate, NewTemplate, TagSpec, TemplateData, TemplateMetadata, TemplateNic, TemplateRef,
    TemplateVersion, VersionQuery,
};
use keycard_services::{ec2, template};

use crate::Req;
use crate::ec2::{bool_param, dry_run_ok, filters, ids, iso8601_ms, required, tag_set, tags};
use crate::ec2_network::respond;

type Out = Result<String, ServiceError>;

/// The operations this module answers.
const NAMES: &[&str] = &[
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    "DescribeImages",
    "RegisterImage",
    "DeregisterImage",
    "CreateLaunchTemplate",
    "CreateLaunchTemplateVersion",
    "ModifyLaunchTemplate",
    "DescribeLaunchTemplates",
    "DescribeLaunchTemplateVersions",
    "DeleteLaunchTemplate",
    "DeleteLaunchTemplateVersions",
    "GetLaunchTemplateData",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "CreateKeyPair" => create_key_pair(req, p, dry).await,
        "ImportKeyPair" => import_key_pair(req, p, dry).await,
        "DescribeKeyPairs" => describe_key_pairs(req, p, dry),
        "DeleteKeyPair" => delete_key_pair(req, p, dry).await,
        "DescribeImages" => describe_images(req, p, dry),
        "RegisterImage" => register_image(req, p, dry).await,
        "DeregisterImage" => deregister_image(req, p, dry).await,
        "CreateLaunchTemplate" => create_template(req, p, dry).await,
        "CreateLaunchTemplateVersion" => create_version(req, p, dry).await,
        "ModifyLaunchTemplate" => modify_template(req, p, dry).await,
        "DescribeLaunchTemplates" => describe_templates(req, p, dry),
        "DescribeLaunchTemplateVersions" => describe_versions(req, p, dry),
        "DeleteLaunchTemplate" => delete_template(req, p, dry).await,
        "DeleteLaunchTemplateVersions" => delete_versions(req, p, dry).await,
        "GetLaunchTemplateData" => get_template_data(req, p, dry),
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// The tags TagSpecifications give a resource of type `kind`, checked.
fn own_tags(p: &Params, kind: &str) -> Result<Vec<keycard_services::model::Tag>, ServiceError> {
    let out = crate::ec2_vpc::tag_specs(p, kind)?;
    ec2::validate_tags(&out)?;
    Ok(out)
}

impl Req {
    /// A Describe call: its action (`ec2:` + the operation) on `*` (EC2's
    /// Describe actions have no resource types), then DryRun.
    pub(crate) fn authorize_describe(&mut self, dry: bool) -> Result<(), ServiceError> {
        let action = format!("ec2:{}", self.op.name);
        self.authorize(&action, "*", None, ResourcePolicy::None)?;
        if dry {
            return Err(dry_run_ok());
        }
        Ok(())
    }

    /// The operation's action on one existing resource, its tags as
    /// `aws:ResourceTag/…`.
    fn authorize_on(
        &mut self,
        arn: String,
        kind: &str,
        tags: &[keycard_services::model::Tag],
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

// --- key pairs ---

fn key_xml(w: &mut XmlWriter, k: &KeyPair) {
    w.elem("keyPairId", &k.id)
        .elem("keyName", &k.name)
        .elem("keyFingerprint", &k.fingerprint);
    tag_set(w, &k.tags);
}

async fn create_key_pair(req: &mut Req, p: &Params, dry: bool) -> Out {
    let name = required(p, "KeyName")?.to_string();
    let c = CreateKey {
        name: &name,
        key_type: p.get("KeyType").unwrap_or("rsa"),
        format: p.get("KeyFormat").unwrap_or("pem"),
        tags: own_tags(p, "key-pair")?,
    };
    keycard_services::keypair::check_create(&c)?;
    req.authorize_create("key-pair", &c.tags, None)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let (k, material) = req.kc.create_key_pair(&account, &region, c).await?;
    req.audit
        .resources
        .push((k.arn(), "AWS::EC2::KeyPair".into()));
    // The private key never reaches the audit record.
    req.audit.response = serde_json::json!({
        "keyPairId": k.id, "keyName": k.name, "keyFingerprint": k.fingerprint,
    });
    Ok(respond(req, |w| {
        key_xml(w, &k);
        w.elem("keyMaterial", material.expose());
    }))
}

async fn import_key_pair(req: &mut Req, p: &Params, dry: bool) -> Out {
    use base64::Engine;
    let name = required(p, "KeyName")?.to_string();
    let b64 = required(p, "PublicKeyMaterial")?;
    let material = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| {
            ServiceError::InvalidParameterValue(
                "Value for parameter PublicKeyMaterial is invalid. Invalid base64 encoding".into(),
            )
        })?;
    let t = own_tags(p, "key-pair")?;
    // Refuse bad key material before the permission check, dry or not.
    keycard_services::sshkey::import(&material)?;
    req.authorize_create("key-pair", &t, None)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let k = req
        .kc
        .import_key_pair(&account, &region, &name, &material, t)
        .await?;
    req.audit
        .resources
        .push((k.arn(), "AWS::EC2::KeyPair".into()));
    Ok(respond(req, |w| key_xml(w, &k)))
}

fn describe_key_pairs(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let with_public = bool_param(p, "IncludePublicKey")?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let found = req.kc.describe_key_pairs(
        &account,
        &region,
        &ids(p, "KeyName"),
        &ids(p, "KeyPairId"),
        &filters(p),
    )?;
    Ok(respond(req, |w| {
        w.start("keySet");
        for k in &found {
            w.start("item")
                .elem("keyPairId", &k.id)
                .elem("keyType", &k.key_type);
            tag_set(w, &k.tags);
            if with_public {
                w.elem("publicKey", &k.openssh_line());
            }
            w.elem("createTime", &iso8601_ms(k.create_time_ms / 1000))
                .elem("keyName", &k.name)
                .elem("keyFingerprint", &k.fingerprint)
                .end("item");
        }
        w.end("keySet");
    }))
}

async fn delete_key_pair(req: &mut Req, p: &Params, dry: bool) -> Out {
    let (name, id) = (p.get("KeyName"), p.get("KeyPairId"));
    if name.is_none() && id.is_none() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter KeyName or KeyPairId".into(),
        ));
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let found = req.kc.find_key_pair(&account, &region, name, id);
    let arn = match &found {
        Some(k) => k.arn(),
        None => req.ec2_resource("key-pair", name.or(id).unwrap_or("*")),
    };
    let no_tags = Vec::new();
    let t = found.as_ref().map_or(&no_tags, |k| &k.tags);
    req.authorize_on(arn, "AWS::EC2::KeyPair", t)?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.delete_key_pair(found.as_ref()).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
        if let Some(k) = &found {
            w.elem("keyPairId", &k.id);
        }
    }))
}

// --- images ---

fn image_xml(w: &mut XmlWriter, i: &Image) {
    w.start("item")
        .elem("imageId", &i.id)
        .opt_elem("imageLocation", i.image_location.as_deref())
        .elem("imageState", i.state())
        .elem("imageOwnerId", &i.account)
        .elem("creationDate", &iso8601_ms(i.creation_time))
        .elem("isPublic", if i.public { "true" } else { "false" })
        .elem("architecture", &i.architecture)
        .elem("imageType", "machine")
        .elem("platformDetails", i.platform_details())
        .elem("usageOperation", "RunInstances")
        .opt_elem("imageOwnerAlias", i.owner_alias.as_deref())
        .elem("name", &i.name)
        .opt_elem("description", i.description.as_deref())
        .elem("rootDeviceType", "ebs")
        .elem("rootDeviceName", &i.root_device_name)
        .start("blockDeviceMapping")
        .start("item")
        .elem("deviceName", &i.root_device_name)
        .start("ebs")
        .elem("deleteOnTermination", "true")
        .elem("volumeSize", "8")
        .elem("volumeType", "gp3")
        .elem("encrypted", "false")
        .end("ebs")
        .end("item")
        .end("blockDeviceMapping")
        .elem("virtualizationType", &i.virtualization_type)
        .elem("hypervisor", "xen")
        .elem("enaSupport", if i.ena_support { "true" } else { "false" })
        .opt_elem("bootMode", i.boot_mode.as_deref())
        .opt_elem("imdsSupport", i.imds_support.as_deref());
    tag_set(w, &i.tags);
    w.end("item");
}

fn describe_images(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let q = ImageQuery {
        ids: ids(p, "ImageId"),
        owners: ids(p, "Owner"),
        executable_by: ids(p, "ExecutableBy"),
        filters: filters(p),
    };
    if !q.ids.is_empty() && p.contains("MaxResults") {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter imageIds cannot be used with the parameter maxResults".into(),
        ));
    }
    let (after, limit) = paging(p, 5, 1000)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let all = req.kc.describe_images(&account, &region, &q)?;
    let (page, next) = page_of(all, after.as_deref(), limit, |i| i.id.clone());
    Ok(respond(req, |w| {
        w.start("imagesSet");
        for i in &page {
            image_xml(w, i);
        }
        w.end("imagesSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

async fn register_image(req: &mut Req, p: &Params, dry: bool) -> Out {
    let r = RegisterInput {
        name: required(p, "Name")?.to_string(),
        description: p.get("Description").map(str::to_string),
        architecture: p.get("Architecture").map(str::to_string),
        root_device_name: p.get("RootDeviceName").map(str::to_string),
        virtualization_type: p.get("VirtualizationType").map(str::to_string),
        image_location: p.get("ImageLocation").map(str::to_string),
        ena_support: bool_param(p, "EnaSupport")?,
        boot_mode: p.get("BootMode").map(str::to_string),
        imds_support: p.get("ImdsSupport").map(str::to_string),
        tags: own_tags(p, "image")?,
    };
    keycard_services::image::check_register(&r)?;
    let region = req.region.clone();
    req.request_tags(r.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
    let any = format!("arn:aws:ec2:{region}::image/*");
    req.check(Check::new("ec2:RegisterImage", any.clone()).key("ec2:Region", region.clone()))?;
    if !r.tags.is_empty() {
        req.check(Check::new("ec2:CreateTags", any).key("ec2:CreateAction", "RegisterImage"))?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let account = req.caller.account.clone();
    let img = req.kc.register_image(&account, &region, r).await?;
    req.audit
        .resources
        .push((img.arn(), "AWS::EC2::Image".into()));
    Ok(respond(req, |w| {
        w.elem("imageId", &img.id);
    }))
}

async fn deregister_image(req: &mut Req, p: &Params, dry: bool) -> Out {
    let id = required(p, "ImageId")?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let img = req.kc.own_image(&account, &region, id)?;
    req.authorize_on(img.arn(), "AWS::EC2::Image", &img.tags)?;
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.deregister_image(&account, &region, id).await?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

// --- launch templates ---

fn opt_bool(p: &Params, name: &str) -> Result<Option<bool>, ServiceError> {
    p.contains(name).then(|| bool_param(p, name)).transpose()
}

fn nonempty(v: Option<&str>) -> Option<String> {
    v.map(str::to_string)
}

/// `LaunchTemplateData.*` as keycard models it.
pub(crate) fn template_data(d: &Params) -> Result<TemplateData, ServiceError> {
    let prof = d.sub("IamInstanceProfile");
    let md = d.sub("MetadataOptions");
    let metadata = if md.is_empty() {
        None
    } else {
        let hop = md.get("HttpPutResponseHopLimit");
        let m = TemplateMetadata {
            http_tokens: nonempty(md.get("HttpTokens")),
            hop_limit: None,
            http_endpoint: nonempty(md.get("HttpEndpoint")),
            http_protocol_ipv6: nonempty(md.get("HttpProtocolIpv6")),
            instance_metadata_tags: nonempty(md.get("InstanceMetadataTags")),
        };
        let mut input = m.as_input();
        input.hop_limit = hop.map(str::to_string);
        let applied = input.apply(&ec2::MetadataOptions::default())?;
        Some(TemplateMetadata {
            hop_limit: hop.map(|_| applied.hop_limit),
            ..m
        })
    };
    let mut tag_specs = Vec::new();
    for s in d.structs("TagSpecification") {
        tag_specs.push(TagSpec {
            resource_type: s.get("ResourceType").unwrap_or("").to_string(),
            tags: tags(s.structs("Tag"))?,
        });
    }
    let mut nics = Vec::new();
    for n in d.structs("NetworkInterface") {
        let index = n
            .get("DeviceIndex")
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    ServiceError::InvalidParameterValue(format!(
                        "Invalid value '{v}' for DeviceIndex"
                    ))
                })
            })
            .transpose()?;
        nics.push(TemplateNic {
            device_index: index,
            subnet_id: nonempty(n.get("SubnetId")),
            groups: ids(&n, "SecurityGroupId"),
            private_ip: nonempty(n.get("PrivateIpAddress")),
            associate_public_ip: opt_bool(&n, "AssociatePublicIpAddress")?,
            delete_on_termination: opt_bool(&n, "DeleteOnTermination")?,
            description: nonempty(n.get("Description")),
        });
    }
    Ok(TemplateData {
        image_id: nonempty(d.get("ImageId")),
        instance_type: nonempty(d.get("InstanceType")),
        key_name: nonempty(d.get("KeyName")),
        user_data: nonempty(d.get("UserData")),
        profile_arn: nonempty(prof.get("Arn")),
        profile_name: nonempty(prof.get("Name")),
        metadata,
        tag_specs,
        security_group_ids: ids(d, "SecurityGroupId"),
        security_groups: ids(d, "SecurityGroup"),
        network_interfaces: nics,
        disable_api_termination: opt_bool(d, "DisableApiTermination")?,
        ebs_optimized: opt_bool(d, "EbsOptimized")?,
    })
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn string_set(w: &mut XmlWriter, tag: &str, item: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    w.start(tag);
    for v in values {
        w.elem(item, v);
    }
    w.end(tag);
}

/// ResponseLaunchTemplateData: what was given, nothing more.
pub(crate) fn data_xml(w: &mut XmlWriter, d: &TemplateData) {
    w.start("launchTemplateData");
    if d.profile_arn.is_some() || d.profile_name.is_some() {
        w.start("iamInstanceProfile")
            .opt_elem("arn", d.profile_arn.as_deref())
            .opt_elem("name", d.profile_name.as_deref())
            .end("iamInstanceProfile");
    }
    if !d.network_interfaces.is_empty() {
        w.start("networkInterfaceSet");
        for n in &d.network_interfaces {
            w.start("item");
            if let Some(b) = n.associate_public_ip {
                w.elem("associatePublicIpAddress", bool_text(b));
            }
            if let Some(b) = n.delete_on_termination {
                w.elem("deleteOnTermination", bool_text(b));
            }
            w.opt_elem("description", n.description.as_deref());
            if let Some(i) = n.device_index {
                w.elem_display("deviceIndex", i);
            }
            string_set(w, "groupSet", "groupId", &n.groups);
            w.opt_elem("privateIpAddress", n.private_ip.as_deref())
                .opt_elem("subnetId", n.subnet_id.as_deref())
                .end("item");
        }
        w.end("networkInterfaceSet");
    }
    w.opt_elem("imageId", d.image_id.as_deref())
        .opt_elem("instanceType", d.instance_type.as_deref())
        .opt_elem("keyName", d.key_name.as_deref());
    if let Some(b) = d.disable_api_termination {
        w.elem("disableApiTermination", bool_text(b));
    }
    if let Some(b) = d.ebs_optimized {
        w.elem("ebsOptimized", bool_text(b));
    }
    w.opt_elem("userData", d.user_data.as_deref());
    if !d.tag_specs.is_empty() {
        w.start("tagSpecificationSet");
        for s in &d.tag_specs {
            w.start("item").elem("resourceType", &s.resource_type);
            tag_set(w, &s.tags);
            w.end("item");
        }
        w.end("tagSpecificationSet");
    }
    string_set(w, "securityGroupIdSet", "item", &d.security_group_ids);
    string_set(w, "securityGroupSet", "item", &d.security_groups);
    if let Some(m) = &d.metadata {
        w.start("metadataOptions")
            .elem("state", "applied")
            .opt_elem("httpTokens", m.http_tokens.as_deref());
        if let Some(h) = m.hop_limit {
            w.elem_display("httpPutResponseHopLimit", h);
        }
        w.opt_elem("httpEndpoint", m.http_endpoint.as_deref())
            .opt_elem("httpProtocolIpv6", m.http_protocol_ipv6.as_deref())
            .opt_elem("instanceMetadataTags", m.instance_metadata_tags.as_deref())
            .end("metadataOptions");
    }
    w.end("launchTemplateData");
}

fn template_xml(w: &mut XmlWriter, tag: &str, t: &LaunchTemplate) {
    w.start(tag)
        .elem("launchTemplateId", &t.id)
        .elem("launchTemplateName", &t.name)
        .elem("createTime", &iso8601_ms(t.create_time))
        .elem("createdBy", &t.created_by)
        .elem_display("defaultVersionNumber", t.default_version)
        .elem_display("latestVersionNumber", t.latest_version);
    tag_set(w, &t.tags);
    w.end(tag);
}

fn version_xml(w: &mut XmlWriter, tag: &str, t: &LaunchTemplate, v: &TemplateVersion) {
    w.start(tag)
        .elem("launchTemplateId", &t.id)
        .elem("launchTemplateName", &t.name)
        .elem_display("versionNumber", v.number)
        .opt_elem("versionDescription", v.description.as_deref())
        .elem("createTime", &iso8601_ms(v.create_time))
        .elem("createdBy", &v.created_by)
        .elem("defaultVersion", bool_text(v.number == t.default_version));
    data_xml(w, &v.data);
    w.end(tag);
}

fn warning_xml(w: &mut XmlWriter, warnings: &[(String, String)]) {
    if warnings.is_empty() {
        return;
    }
    w.start("warning").start("errorSet");
    for (code, msg) in warnings {
        w.start("item")
            .elem("code", code)
            .elem("message", msg)
            .end("item");
    }
    w.end("errorSet").end("warning");
}

fn template_ref(p: &Params) -> Result<TemplateRef, ServiceError> {
    TemplateRef::from_params(p.get("LaunchTemplateId"), p.get("LaunchTemplateName"))
}

/// `LaunchTemplateData`; an empty one (`{}` sends no parameters at all)
/// is a template with no launch parameters.
fn need_data(p: &Params) -> Result<TemplateData, ServiceError> {
    template_data(&p.sub("LaunchTemplateData"))
}

async fn create_template(req: &mut Req, p: &Params, dry: bool) -> Out {
    let n = NewTemplate {
        name: required(p, "LaunchTemplateName")?.to_string(),
        description: p.get("VersionDescription").map(str::to_string),
        data: need_data(p)?,
        tags: own_tags(p, "launch-template")?,
        created_by: req.caller.principal.arn.clone(),
    };
    template::check_new(&n)?;
    req.authorize_create("launch-template", &n.tags, None)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let warnings = {
        let st = req.kc.state();
        template::warnings(&st, &account, &region, &n.data)
    };
    let t = req.kc.create_launch_template(&account, &region, n).await?;
    req.audit
        .resources
        .push((t.arn(), "AWS::EC2::LaunchTemplate".into()));
    Ok(respond(req, |w| {
        template_xml(w, "launchTemplate", &t);
        warning_xml(w, &warnings);
    }))
}

/// The template a request names, authorized with the operation's action.
fn authorized_template(req: &mut Req, r: &TemplateRef) -> Result<LaunchTemplate, ServiceError> {
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let t = req.kc.launch_template(&account, &region, r)?;
    req.authorize_on(t.arn(), "AWS::EC2::LaunchTemplate", &t.tags)?;
    Ok(t)
}

async fn create_version(req: &mut Req, p: &Params, dry: bool) -> Out {
    let r = template_ref(p)?;
    let data = need_data(p)?;
    let description = p.get("VersionDescription").map(str::to_string);
    template::check_data(&data)?;
    let t = authorized_template(req, &r)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let warnings = {
        let st = req.kc.state();
        template::warnings(&st, &account, &region, &data)
    };
    let by = req.caller.principal.arn.clone();
    let (t, v) = req
        .kc
        .create_template_version(
            &account,
            &region,
            &TemplateRef::Id(t.id),
            p.get("SourceVersion"),
            description,
            data,
            &by,
        )
        .await?;
    Ok(respond(req, |w| {
        version_xml(w, "launchTemplateVersion", &t, &v);
        warning_xml(w, &warnings);
    }))
}

async fn modify_template(req: &mut Req, p: &Params, dry: bool) -> Out {
    let r = template_ref(p)?;
    let t = authorized_template(req, &r)?;
    let wanted = p.get("SetDefaultVersion");
    if let Some(v) = wanted {
        t.resolve(Some(v))?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let t = req
        .kc
        .set_default_version(&account, &region, &TemplateRef::Id(t.id), wanted)
        .await?;
    Ok(respond(req, |w| template_xml(w, "launchTemplate", &t)))
}

fn describe_templates(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let (after, limit) = paging(p, 1, 200)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let all = req.kc.describe_launch_templates(
        &account,
        &region,
        &ids(p, "LaunchTemplateId"),
        &ids(p, "LaunchTemplateName"),
        &filters(p),
    )?;
    let (page, next) = page_of(all, after.as_deref(), limit, |t| t.id.clone());
    Ok(respond(req, |w| {
        w.start("launchTemplates");
        for t in &page {
            template_xml(w, "item", t);
        }
        w.end("launchTemplates");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

fn describe_versions(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let template = match (p.get("LaunchTemplateId"), p.get("LaunchTemplateName")) {
        (None, None) => None,
        (id, name) => Some(TemplateRef::from_params(id, name)?),
    };
    let q = VersionQuery {
        template,
        versions: ids(p, "LaunchTemplateVersion"),
        min: p.get("MinVersion").map(str::to_string),
        max: p.get("MaxVersion").map(str::to_string),
        filters: filters(p),
    };
    let (after, limit) = paging(p, 1, 200)?;
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let all = req.kc.describe_template_versions(&account, &region, &q)?;
    // Tokens name "<template>/<version>" of the last item shown.
    let key = |(t, v): &(LaunchTemplate, TemplateVersion)| {
        format!("{}/{:020}", t.id, u64::MAX - v.number)
    };
    let (page, next) = page_of(all, after.as_deref(), limit, key);
    Ok(respond(req, |w| {
        w.start("launchTemplateVersionSet");
        for (t, v) in &page {
            version_xml(w, "item", t, v);
        }
        w.end("launchTemplateVersionSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

async fn delete_template(req: &mut Req, p: &Params, dry: bool) -> Out {
    let r = template_ref(p)?;
    let t = authorized_template(req, &r)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let t = req
        .kc
        .delete_launch_template(&account, &region, &TemplateRef::Id(t.id))
        .await?;
    Ok(respond(req, |w| template_xml(w, "launchTemplate", &t)))
}

async fn delete_versions(req: &mut Req, p: &Params, dry: bool) -> Out {
    let r = template_ref(p)?;
    let versions = ids(p, "LaunchTemplateVersion");
    let t = authorized_template(req, &r)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (account, region) = (req.caller.account.clone(), req.region.clone());
    let (t, results) = req
        .kc
        .delete_template_versions(&account, &region, &TemplateRef::Id(t.id), &versions)
        .await?;
    let item = |w: &mut XmlWriter, n: u64| {
        w.elem("launchTemplateId", &t.id)
            .elem("launchTemplateName", &t.name)
            .elem_display("versionNumber", n);
    };
    Ok(respond(req, |w| {
        w.start("successfullyDeletedLaunchTemplateVersionSet");
        for (n, _) in results.iter().filter(|(_, e)| e.is_none()) {
            w.start("item");
            item(w, *n);
            w.end("item");
        }
        w.end("successfullyDeletedLaunchTemplateVersionSet");
        w.start("unsuccessfullyDeletedLaunchTemplateVersionSet");
        for (n, e) in &results {
            if let Some((code, msg)) = e {
                w.start("item");
                item(w, *n);
                w.start("responseError")
                    .elem("code", code)
                    .elem("message", msg)
                    .end("responseError")
                    .end("item");
            }
        }
        w.end("unsuccessfullyDeletedLaunchTemplateVersionSet");
    }))
}

/// GetLaunchTemplateData: an instance's launch parameters as template
/// data.
fn get_template_data(req: &mut Req, p: &Params, dry: bool) -> Out {
    let iid = required(p, "InstanceId")?;
    req.authorize_describe(dry)?;
    let account = req.caller.account.clone();
    let inst = req.kc.instance(&account, iid)?;
    let d = crate::ec2_run::instance_template_data(&inst);
    Ok(respond(req, |w| data_xml(w, &d)))
}

// --- paging ---

/// MaxResults (`min`..=`max`) and NextToken.
fn paging(
    p: &Params,
    min: usize,
    max: usize,
) -> Result<(Option<String>, Option<usize>), ServiceError> {
    let limit = ec2::max_results(p.get("MaxResults"), min, max)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    Ok((after, limit))
}

/// One page of `all` (sorted by `key`) after the token's key.
fn page_of<T>(
    all: Vec<T>,
    after: Option<&str>,
    limit: Option<usize>,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = all
        .into_iter()
        .filter(|x| after.is_none_or(|a| key(x).as_str() > a))
        .collect();
    let mut next = None;
    if let Some(l) = limit
        && rest.len() > l
    {
        rest.truncate(l);
        next = rest.last().map(|x| ec2::next_token(&key(x)));
    }
    (rest, next)
}
