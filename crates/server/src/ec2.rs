//! The EC2 query API, the instance and instance-profile part: `Name.N`
//! lists, responses without a Result wrapper, `<Response><Errors>` errors,
//! `DryRun`, and iam:PassRole when a profile is attached.

use axum::body::Body;
use http::Response;
use keycard_proto::query::Params;
use keycard_proto::xml::{XmlWriter, ec2_response};
use keycard_services::auth::{Check, ResourcePolicy};
use keycard_services::ec2::{
    self, Filter, Instance, MetadataOptions, MetadataOptionsInput, ProfileAssociation, ProfileRef,
    RunInput, StateOp,
};
use keycard_services::instance_attrs::InstanceAttrs;
use keycard_services::model::{InstanceProfile, Tag};
use keycard_services::network::{LaunchNetwork, Placement};
use keycard_services::nodes::Liveness;
use keycard_services::sts::iso8601;
use keycard_services::volume::Volume;
use keycard_services::vpc::NetworkInterface;
use keycard_services::{Keycard, ServiceError};

use crate::ec2_run::from_template;
use crate::iam::{audit_params, params};
use crate::{Req, xml_response};

type R = Result<Response<Body>, ServiceError>;

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

pub(crate) fn ids(p: &Params, name: &str) -> Vec<String> {
    p.list(name).into_iter().map(str::to_string).collect()
}

pub(crate) fn filters(p: &Params) -> Vec<Filter> {
    p.structs("Filter")
        .into_iter()
        .map(|f| Filter {
            name: f.get("Name").unwrap_or("").to_string(),
            values: f.list("Value").into_iter().map(str::to_string).collect(),
        })
        .collect()
}

pub(crate) fn bool_param(p: &Params, name: &str) -> Result<bool, ServiceError> {
    match p.get(name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(bad(format!(
            "Invalid value '{v}' for {name}; expecting true or false"
        ))),
    }
}

fn profile_ref(p: &Params, prefix: &str) -> Result<Option<ProfileRef>, ServiceError> {
    let s = p.sub(prefix);
    match (s.get("Arn"), s.get("Name")) {
        (Some(_), Some(_)) => Err(ServiceError::InvalidParameterCombination(
            "The parameter 'iamInstanceProfile.arn' may not be used in combination with 'iamInstanceProfile.name'".into(),
        )),
        (Some(a), None) => Ok(Some(ProfileRef::Arn(a.to_string()))),
        (None, Some(n)) => Ok(Some(ProfileRef::Name(n.to_string()))),
        (None, None) => Ok(None),
    }
}

fn metadata_input(p: &Params) -> MetadataOptionsInput {
    MetadataOptionsInput {
        http_tokens: p.get("HttpTokens").map(str::to_string),
        http_endpoint: p.get("HttpEndpoint").map(str::to_string),
        hop_limit: p.get("HttpPutResponseHopLimit").map(str::to_string),
        instance_metadata_tags: p.get("InstanceMetadataTags").map(str::to_string),
    }
}

pub(crate) fn tags(list: Vec<Params>) -> Result<Vec<Tag>, ServiceError> {
    list.into_iter()
        .map(|t| {
            Ok(Tag {
                key: t
                    .get("Key")
                    .ok_or_else(|| ServiceError::MissingParameter("Tag key is missing".into()))?
                    .to_string(),
                value: t.get("Value").unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// A required scalar parameter; EC2's `MissingParameter` when absent.
pub(crate) fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ServiceError> {
    p.required(name)
        .map_err(|e| ServiceError::MissingParameter(e.message))
}

fn count(p: &Params, name: &str) -> Result<u32, ServiceError> {
    let v = required(p, name)?;
    v.parse::<u32>()
        .map_err(|_| bad(format!("Invalid value '{v}' for {name}")))
}

impl Req {
    pub(crate) fn ec2_resource(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{}:{kind}/{id}",
            self.region, self.caller.account
        )
    }

    /// Authorize an instance action. The instance's tags, profile and
    /// type are keys of this check alone.
    pub(crate) fn authorize_instance(
        &mut self,
        action: &str,
        i: &Instance,
    ) -> Result<(), ServiceError> {
        let arn = i.arn();
        self.audit
            .resources
            .push((arn.clone(), "AWS::EC2::Instance".into()));
        let mut c = Check::new(action, arn)
            .account(i.account.clone())
            .tags(Some("ec2"), &i.tags)
            .key("ec2:InstanceType", i.instance_type.clone())
            .key("ec2:Region", self.region.clone());
        if let Some(a) = &i.profile {
            c = c.key("ec2:InstanceProfile", a.profile_arn.clone());
        }
        self.check(c)
    }

    /// [`Req::authorize_instance`] for the caller's instance `id` (a volume
    /// or an interface going on or coming off it).
    pub(crate) fn authorize_instance_id(
        &mut self,
        action: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        let account = self.caller.account.clone();
        let i = self.kc.instance(&account, id)?;
        self.authorize_instance(action, &i)
    }

    /// The `ec2:Metadata*` condition keys of the options a request asks for.
    fn metadata_context(&mut self, m: &MetadataOptions) {
        self.request_key("ec2:MetadataHttpTokens", m.http_tokens.clone());
        self.request_key("ec2:MetadataHttpEndpoint", m.http_endpoint.clone());
        self.request_key(
            "ec2:MetadataHttpPutResponseHopLimit",
            m.hop_limit.to_string(),
        );
        self.request_key("ec2:InstanceMetadataTags", m.instance_metadata_tags.clone());
    }

    /// iam:PassRole for each role in the profile, with the instance as
    /// the associated resource, as EC2 checks it.
    fn authorize_pass_role(
        &mut self,
        profile: &InstanceProfile,
        instance_arn: &str,
    ) -> Result<(), ServiceError> {
        let roles = {
            let st = self.kc.state();
            ec2::profile_role_arns(&st, profile)
        };
        for role in roles {
            self.check(
                Check::new("iam:PassRole", role)
                    .account(profile.account.clone())
                    .key("iam:PassedToService", "ec2.amazonaws.com")
                    .key("iam:AssociatedResourceArn", instance_arn.to_string()),
            )?;
        }
        Ok(())
    }
}

/// RunInstances' `NetworkInterface.1` (device 0): its subnet, groups
/// and address, which may not be given at the instance level too.
fn primary_interface(p: &Params, mut input: RunInput) -> Result<RunInput, ServiceError> {
    let nics = p.structs("NetworkInterface");
    let Some(nic) = nics.first() else {
        return Ok(input);
    };
    if nics.len() > 1 || nic.get("DeviceIndex").is_some_and(|d| d != "0") {
        return Err(ServiceError::UnsupportedOperation(
            "keycard instances have one network interface (DeviceIndex 0)".into(),
        ));
    }
    let n = &mut input.network;
    if n.subnet_id.is_some() || !n.group_ids.is_empty() || !n.group_names.is_empty() {
        return Err(ServiceError::InvalidParameterCombination(
            "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request".into(),
        ));
    }
    if input.private_ip.is_some() && nic.get("PrivateIpAddress").is_some() {
        return Err(ServiceError::InvalidParameterCombination(
            "Network interfaces and an instance-level private IP address may not be specified on the same request".into(),
        ));
    }
    n.subnet_id = nic.get("SubnetId").map(str::to_string);
    n.group_ids = ids(nic, "SecurityGroupId");
    if let Some(ip) = nic.get("PrivateIpAddress") {
        input.private_ip = Some(ip.to_string());
    }
    Ok(input)
}

impl Req {
    /// ec2:RunInstances on the subnet and each security group, with
    /// their tags and `ec2:Vpc` as keys of that check alone.
    fn authorize_placement(
        &mut self,
        pl: &Placement,
        lt: Option<bool>,
    ) -> Result<(), ServiceError> {
        let vpc = pl.vpc.arn();
        let subnet = Check::new("ec2:RunInstances", pl.subnet.arn())
            .account(pl.subnet.account.clone())
            .tags(Some("ec2"), &pl.subnet.tags)
            .key("ec2:Vpc", vpc.clone())
            .key("ec2:Region", self.region.clone());
        self.check(from_template(subnet, lt))?;
        for g in &pl.groups {
            let c = Check::new("ec2:RunInstances", g.arn())
                .account(g.account.clone())
                .tags(Some("ec2"), &g.tags)
                .key("ec2:Vpc", vpc.clone())
                .key("ec2:Region", self.region.clone());
            self.check(from_template(c, lt))?;
        }
        Ok(())
    }
}

/// RunInstances' instance attributes: protection, shutdown behaviour,
/// EBS optimization and the CPU credit option.
fn launch_attrs(p: &Params) -> Result<InstanceAttrs, ServiceError> {
    let mut a = InstanceAttrs {
        disable_api_termination: bool_param(p, "DisableApiTermination")?,
        disable_api_stop: bool_param(p, "DisableApiStop")?,
        ebs_optimized: bool_param(p, "EbsOptimized")?,
        ..InstanceAttrs::default()
    };
    if let Some(b) = p.get("InstanceInitiatedShutdownBehavior") {
        a.shutdown_behavior = b.to_string();
    }
    if let Some(c) = p.sub("CreditSpecification").get("CpuCredits") {
        keycard_services::instance_attrs::check_cpu_credits(c)?;
        a.cpu_credits = Some(c.to_string());
    }
    Ok(a)
}

/// The one change of a call that takes one attribute at a time:
/// InvalidParameterCombination without any ("No attributes specified.",
/// as AWS answers ModifyInstanceAttribute) or naming them when several are
/// given.
pub(crate) fn one_attribute<T: Clone>(
    changes: &[T],
    name: impl Fn(&T) -> &'static str,
) -> Result<T, ServiceError> {
    match changes {
        [one] => Ok(one.clone()),
        [] => Err(ServiceError::InvalidParameterCombination(
            "No attributes specified.".into(),
        )),
        many => {
            let names: Vec<&str> = many.iter().map(name).collect();
            Err(ServiceError::InvalidParameterCombination(format!(
                "Fields for multiple attribute types specified: {}",
                names.join(", ")
            )))
        }
    }
}

impl Req {
    /// `action` on each security group a request names.
    pub(crate) fn authorize_groups(
        &mut self,
        action: &str,
        ids: &[String],
    ) -> Result<(), ServiceError> {
        let account = self.caller.account.clone();
        for id in ids {
            let arn = self.ec2_resource("security-group", id);
            self.authorize(action, &arn, Some(&account), ResourcePolicy::None)?;
        }
        Ok(())
    }

    /// A request's tags as `aws:RequestTag/…` and `aws:TagKeys`.
    pub(crate) fn request_tag_list(&mut self, tags: &[Tag]) {
        self.request_tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
    }
}

/// DryRun: permission checks passed, so say so and stop.
pub(crate) fn dry_run_ok() -> ServiceError {
    ServiceError::DryRunOperation("Request would have succeeded, but DryRun flag is set.".into())
}

pub async fn handle(req: &mut Req) -> R {
    let p = params(req)?;
    let action = req.op.name;
    req.audit.params = audit_params(&p);
    let dry = bool_param(&p, "DryRun")?;
    let body = match action {
        "RunInstances" => run_instances(req, &p, dry).await?,
        "DescribeInstances" => describe_instances(req, &p, dry)?,
        "DescribeInstanceStatus" => describe_status(req, &p, dry)?,
        "StartInstances" => change_state(req, &p, dry, StateOp::Start).await?,
        "StopInstances" => change_state(req, &p, dry, StateOp::Stop).await?,
        "TerminateInstances" => change_state(req, &p, dry, StateOp::Terminate).await?,
        "AssociateIamInstanceProfile" => associate(req, &p, dry).await?,
        "DisassociateIamInstanceProfile" => disassociate(req, &p, dry).await?,
        "ReplaceIamInstanceProfileAssociation" => replace(req, &p, dry).await?,
        "DescribeIamInstanceProfileAssociations" => describe_associations(req, &p, dry)?,
        "ModifyInstanceMetadataOptions" => modify_metadata(req, &p, dry).await?,
        n if crate::ec2_network::handles(n) => crate::ec2_network::handle(req, &p, dry)?,
        n if crate::ec2_vpc::handles(n) => crate::ec2_vpc::handle(req, &p, dry).await?,
        n if crate::ec2_launch::handles(n) => crate::ec2_launch::handle(req, &p, dry).await?,
        n if crate::ec2_volume::handles(n) => crate::ec2_volume::handle(req, &p, dry).await?,
        n if crate::ec2_eni::handles(n) => crate::ec2_eni::handle(req, &p, dry).await?,
        n if crate::ec2_instance::handles(n) => crate::ec2_instance::handle(req, &p, dry).await?,
        n if crate::ec2_tags::handles(n) => crate::ec2_tags::handle(req, &p, dry).await?,
        // A row without an arm: the table and this match disagree.
        other => {
            return Err(ServiceError::Internal(format!(
                "operation {other} has a row but no handler"
            )));
        }
    };
    Ok(xml_response(200, body))
}

async fn run_instances(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let template = crate::ec2_run::launch_template(req, p)?;
    let (mut tags_in, mut volume_tags, mut eni_tags) = (Vec::new(), Vec::new(), Vec::new());
    for spec in p.structs("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or("");
        let t = tags(spec.structs("Tag"))?;
        match rt {
            "instance" => tags_in.extend(t),
            "volume" => volume_tags.extend(t),
            "network-interface" => eni_tags.extend(t),
            // keycard has no spot requests or elastic GPUs to tag.
            "spot-instances-request" | "elastic-gpu" => {}
            other => {
                return Err(bad(format!(
                    "'{other}' is not a valid taggable resource type for this operation."
                )));
            }
        }
    }
    let input = RunInput {
        image_id: p.get("ImageId").unwrap_or("").to_string(),
        instance_type: p.get("InstanceType").map(str::to_string),
        min_count: count(p, "MinCount")?,
        max_count: count(p, "MaxCount")?,
        key_name: p.get("KeyName").map(str::to_string),
        profile: profile_ref(p, "IamInstanceProfile")?,
        metadata: metadata_input(&p.sub("MetadataOptions")),
        user_data: p.get("UserData").map(str::to_string),
        tags: tags_in,
        private_ip: p.get("PrivateIpAddress").map(str::to_string),
        client_token: p.get("ClientToken").map(str::to_string),
        network: LaunchNetwork {
            subnet_id: p.get("SubnetId").map(str::to_string),
            group_ids: ids(p, "SecurityGroupId"),
            group_names: ids(p, "SecurityGroup"),
        },
        attrs: launch_attrs(p)?,
        block_devices: crate::ec2_volume::block_devices(p)?,
        volume_tags,
        eni_tags,
    };
    let input = primary_interface(p, input)?;
    let (input, from) =
        crate::ec2_run::with_template(p, input, template.as_ref().map(|(_, v)| &v.data));
    // Validate first: a bad request is refused the same way, dry or not.
    let launch = req.kc.check_run(&req.caller.account, &req.region, &input)?;
    let profile = launch.profile;
    let m = input.metadata.apply(&MetadataOptions::default())?;
    req.request_key(
        "ec2:InstanceType",
        input
            .instance_type
            .clone()
            .unwrap_or_else(|| "m1.small".into()),
    );
    req.metadata_context(&m);
    let region = req.region.clone();
    req.request_key("ec2:Region", region);
    req.request_key("ec2:ImageID", input.image_id.clone());
    if let Some(pr) = &profile {
        req.request_key("ec2:InstanceProfile", pr.arn());
    }
    req.request_tag_list(&input.tags);
    let any_instance = req.ec2_resource("instance", "*");
    let account = req.caller.account.clone();
    if let Some((t, _)) = &template {
        req.request_key("ec2:LaunchTemplate", t.arn());
    }
    req.authorize(
        "ec2:RunInstances",
        &any_instance,
        Some(&account),
        ResourcePolicy::None,
    )?;
    let lt = template.as_ref().map(|_| from.image);
    req.authorize_image(&launch.image, lt)?;
    if let Some((t, _)) = &template {
        req.authorize_launch_template(t)?;
    }
    if let Some(k) = &launch.key {
        req.authorize_key_pair(k, template.as_ref().map(|_| from.key))?;
    }
    for (kind, t) in [
        ("instance", &input.tags),
        ("volume", &input.volume_tags),
        ("network-interface", &input.eni_tags),
    ] {
        if !t.is_empty() {
            let any = req.ec2_resource(kind, "*");
            req.check(
                Check::new("ec2:CreateTags", any)
                    .account(account.clone())
                    .key("ec2:CreateAction", "RunInstances"),
            )?;
        }
    }
    req.authorize_placement(&launch.placement, template.as_ref().map(|_| from.network))?;
    if let Some(pr) = &profile {
        req.authorize_pass_role(pr, &any_instance)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let region = req.region.clone();
    let (reservation, instances) = req.kc.run_instances(&account, &region, input).await?;
    for i in &instances {
        req.audit
            .resources
            .push((i.arn(), "AWS::EC2::Instance".into()));
    }
    req.audit.response = serde_json::json!({
        "reservationId": reservation,
        "instancesSet": {"items": instances.iter().map(|i| serde_json::json!({
            "instanceId": i.id, "imageId": i.image_id, "instanceType": i.instance_type,
        })).collect::<Vec<_>>()},
    });
    let iids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let volumes = req.kc.instance_volumes(&iids);
    let rid = req.request_id.clone();
    Ok(ec2_response("RunInstances", &rid, |w| {
        w.elem("reservationId", &reservation)
            .elem("ownerId", &account)
            .empty("groupSet");
        w.start("instancesSet");
        for (i, (_, vols)) in instances.iter().zip(&volumes) {
            instance_xml(w, i, Some("pending"), vols, &[]);
        }
        w.end("instancesSet");
    }))
}

fn state_xml(w: &mut XmlWriter, tag: &str, name: &str) {
    w.start(tag)
        .elem_display("code", ec2::state_code(name))
        .elem("name", name)
        .end(tag);
}

pub(crate) fn tag_set(w: &mut XmlWriter, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    w.start("tagSet");
    for t in tags {
        w.start("item")
            .elem("key", &t.key)
            .elem("value", &t.value)
            .end("item");
    }
    w.end("tagSet");
}

fn metadata_xml(w: &mut XmlWriter, tag: &str, m: &MetadataOptions, state: &str) {
    w.start(tag)
        .elem("state", state)
        .elem("httpTokens", &m.http_tokens)
        .elem_display("httpPutResponseHopLimit", m.hop_limit)
        .elem("httpEndpoint", &m.http_endpoint)
        .elem("httpProtocolIpv6", "disabled")
        .elem("instanceMetadataTags", &m.instance_metadata_tags)
        .end(tag);
}

/// The list an instance id has in per-instance lists.
fn of<'a, T>(lists: &'a [(String, Vec<T>)], id: &str) -> &'a [T] {
    lists
        .iter()
        .find(|(x, _)| x == id)
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// An instance with its volumes and the interfaces attached beside its
/// primary one.
fn instance_xml(
    w: &mut XmlWriter,
    i: &Instance,
    shown_state: Option<&str>,
    volumes: &[Volume],
    enis: &[NetworkInterface],
) {
    let state = shown_state.unwrap_or(&i.state);
    let live = !i.is_terminated();
    w.start("item")
        .elem("instanceId", &i.id)
        .elem("imageId", &i.image_id);
    state_xml(w, "instanceState", state);
    w.elem(
        "privateDnsName",
        if live { i.private_dns() } else { String::new() }.as_str(),
    )
    .empty("dnsName")
    .elem("reason", i.state_reason.as_deref().unwrap_or(""));
    if let Some(k) = &i.key_name {
        w.elem("keyName", k);
    }
    w.elem_display("amiLaunchIndex", i.launch_index)
        .empty("productCodes")
        .elem("instanceType", &i.instance_type)
        .elem("launchTime", &iso8601_ms(i.launch_time))
        .start("placement")
        .elem("availabilityZone", &i.availability_zone())
        .empty("groupName")
        .elem("tenancy", "default")
        .end("placement")
        .start("monitoring")
        .elem("state", "disabled")
        .end("monitoring");
    if live && let Some(ip) = &i.private_ip {
        w.elem("privateIpAddress", ip);
    }
    crate::ec2_network::instance_network_xml(w, i, enis);
    if let Some(r) = &i.state_reason {
        let code = r.split(':').next().unwrap_or(r);
        w.start("stateReason")
            .elem("code", code)
            .elem("message", r)
            .end("stateReason");
    }
    w.elem("architecture", "x86_64")
        .elem("rootDeviceType", "ebs")
        .elem("rootDeviceName", keycard_services::volume::ROOT_DEVICE);
    crate::ec2_volume::instance_mappings_xml(w, "blockDeviceMapping", volumes);
    w.elem("virtualizationType", "hvm");
    if let Some(t) = &i.client_token {
        w.elem("clientToken", t);
    }
    tag_set(w, &i.tags);
    w.elem("hypervisor", "xen");
    if let Some(a) = &i.profile {
        w.start("iamInstanceProfile")
            .elem("arn", &a.profile_arn)
            .elem("id", &a.profile_id)
            .end("iamInstanceProfile");
    }
    let flag = crate::ec2_network::flag;
    w.elem("ebsOptimized", flag(i.attrs.ebs_optimized))
        .elem("enaSupport", flag(i.attrs.ena_support));
    metadata_xml(w, "metadataOptions", &i.metadata, "applied");
    w.end("item");
}

pub(crate) fn iso8601_ms(t: i64) -> String {
    let s = iso8601(t);
    format!("{}.000Z", s.trim_end_matches('Z'))
}

fn page_params(p: &Params, min: usize) -> Result<(Option<String>, Option<usize>), ServiceError> {
    let limit = ec2::max_results(p.get("MaxResults"), min, 1000)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    Ok((after, limit))
}

fn describe_instances(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    req.authorize_describe(dry)?;
    let wanted = ids(p, "InstanceId");
    if !wanted.is_empty() && p.contains("MaxResults") {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter instancesSet cannot be used with the parameter maxResults".into(),
        ));
    }
    let (after, limit) = page_params(p, 5)?;
    let (found, next) =
        req.kc
            .describe_instances(&account, &wanted, &filters(p), after.as_deref(), limit)?;
    // Group into reservations, in the order instances come.
    let mut groups: Vec<(String, Vec<&Instance>)> = Vec::new();
    for i in &found {
        match groups.iter_mut().find(|(r, _)| *r == i.reservation_id) {
            Some((_, v)) => v.push(i),
            None => groups.push((i.reservation_id.clone(), vec![i])),
        }
    }
    let iids: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
    let volumes = req.kc.instance_volumes(&iids);
    let enis = req.kc.instance_interfaces(&iids);
    let rid = req.request_id.clone();
    Ok(ec2_response("DescribeInstances", &rid, |w| {
        w.start("reservationSet");
        for (r, list) in &groups {
            w.start("item")
                .elem("reservationId", r)
                .elem("ownerId", &account)
                .empty("groupSet")
                .start("instancesSet");
            for i in list {
                instance_xml(w, i, None, of(&volumes, &i.id), of(&enis, &i.id));
            }
            w.end("instancesSet").end("item");
        }
        w.end("reservationSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

fn describe_status(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    req.authorize_describe(dry)?;
    let wanted = ids(p, "InstanceId");
    let all = bool_param(p, "IncludeAllInstances")?;
    let mut fs = Vec::new();
    // Status filters keycard answers after the lookup: (which status,
    // accepted values).
    let mut status_fs: Vec<(&'static str, Vec<String>)> = Vec::new();
    for f in filters(p) {
        match f.name.as_str() {
            "instance-state-name" | "instance-state-code" | "availability-zone" => fs.push(f),
            "instance-status.status" => status_fs.push(("instance", f.values)),
            "system-status.status" => status_fs.push(("system", f.values)),
            other => return Err(bad(format!("The filter '{other}' is invalid"))),
        }
    }
    let (after, limit) = page_params(p, 5)?;
    let (found, next) =
        req.kc
            .describe_instances(&account, &wanted, &fs, after.as_deref(), limit)?;
    let shown: Vec<_> = found
        .iter()
        .filter(|i| all || i.is_running())
        .filter(|i| {
            let h = health(&req.kc, i);
            status_fs.iter().all(|(which, values)| {
                let v = if *which == "instance" {
                    h.instance
                } else {
                    h.system
                };
                values.iter().any(|p| ec2::wildcard(p, v))
            })
        })
        .collect();
    let rid = req.request_id.clone();
    Ok(ec2_response("DescribeInstanceStatus", &rid, |w| {
        w.start("instanceStatusSet");
        for i in &shown {
            let h = health(&req.kc, i);
            w.start("item")
                .elem("instanceId", &i.id)
                .elem("availabilityZone", &i.availability_zone());
            state_xml(w, "instanceState", &i.state);
            w.start("systemStatus")
                .elem("status", h.system)
                .start("details");
            reachability_xml(
                w,
                h.system_check,
                h.impaired_since.filter(|_| h.system == "impaired"),
            );
            w.end("details").end("systemStatus");
            w.start("instanceStatus")
                .elem("status", h.instance)
                .start("details");
            reachability_xml(w, h.instance_check, h.impaired_since);
            w.end("details").end("instanceStatus");
            w.empty("eventsSet").end("item");
        }
        w.end("instanceStatusSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

/// An instance's status checks as DescribeInstanceStatus reports them.
struct Health {
    system: &'static str,
    system_check: &'static str,
    instance: &'static str,
    instance_check: &'static str,
    impaired_since: Option<i64>,
}

/// The host (the node that owns the instance) is fine while it
/// heartbeats; when it is down, both checks fail since its last beat
/// (`keycard node list` says why). On its own node the instance is
/// impaired when its metadata service could not open (the reason is in
/// the server log and on the instance record).
fn health(kc: &Keycard, i: &ec2::Instance) -> Health {
    if !i.is_running() {
        return Health {
            system: "not-applicable",
            system_check: "not-applicable",
            instance: "not-applicable",
            instance_check: "not-applicable",
            impaired_since: None,
        };
    }
    if !kc.serves(i) {
        return node_health(kc.liveness(i.owner()));
    }
    let failed = i.imds_failure().map(|(since, _)| since);
    // Until its metadata service listens, the instance is still booting
    // as far as a caller can tell: `instance-status-ok` waits for it.
    let (instance, instance_check) = match (&i.imds, failed) {
        (_, Some(_)) => ("impaired", "failed"),
        (ec2::ImdsHealth::Unknown, None) => ("initializing", "initializing"),
        _ => ("ok", "passed"),
    };
    Health {
        system: "ok",
        system_check: "passed",
        instance,
        instance_check,
        impaired_since: failed,
    }
}

/// An instance on another node: as healthy as that node.
fn node_health(node: Liveness) -> Health {
    match node {
        Liveness::Live => Health {
            system: "ok",
            system_check: "passed",
            instance: "ok",
            instance_check: "passed",
            impaired_since: None,
        },
        Liveness::Down { since_ms, .. } => Health {
            system: "impaired",
            system_check: "failed",
            instance: "impaired",
            instance_check: "failed",
            impaired_since: Some(since_ms.map_or_else(keycard_services::now, |ms| ms / 1000)),
        },
    }
}

fn reachability_xml(w: &mut XmlWriter, status: &str, since: Option<i64>) {
    w.start("item")
        .elem("name", "reachability")
        .elem("status", status);
    if let Some(t) = since {
        w.elem("impairedSince", &iso8601(t));
    }
    w.end("item");
}

async fn change_state(
    req: &mut Req,
    p: &Params,
    dry: bool,
    op: StateOp,
) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    let wanted = ids(p, "InstanceId");
    if wanted.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter InstanceId".into(),
        ));
    }
    let (action, tag) = match op {
        StateOp::Start => ("ec2:StartInstances", "StartInstances"),
        StateOp::Stop => ("ec2:StopInstances", "StopInstances"),
        StateOp::Terminate => ("ec2:TerminateInstances", "TerminateInstances"),
    };
    let (found, _) = req
        .kc
        .describe_instances(&account, &wanted, &[], None, None)?;
    for i in &found {
        req.authorize_instance(action, i)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let changes = req.kc.change_state(&account, &wanted, op).await?;
    let rid = req.request_id.clone();
    Ok(ec2_response(tag, &rid, |w| {
        w.start("instancesSet");
        for c in &changes {
            w.start("item").elem("instanceId", &c.id);
            state_xml(w, "currentState", &c.current);
            state_xml(w, "previousState", &c.previous);
            w.end("item");
        }
        w.end("instancesSet");
    }))
}

fn association_xml(
    w: &mut XmlWriter,
    tag: &str,
    instance_id: &str,
    a: &ProfileAssociation,
    state: &str,
) {
    w.start(tag)
        .elem("associationId", &a.id)
        .elem("instanceId", instance_id)
        .start("iamInstanceProfile")
        .elem("arn", &a.profile_arn)
        .elem("id", &a.profile_id)
        .end("iamInstanceProfile")
        .elem("state", state)
        .elem("timestamp", &iso8601_ms(a.timestamp))
        .end(tag);
}

fn need_profile(p: &Params) -> Result<ProfileRef, ServiceError> {
    profile_ref(p, "IamInstanceProfile")?.ok_or_else(|| {
        ServiceError::MissingParameter(
            "The request must contain the parameter IamInstanceProfile".into(),
        )
    })
}

async fn associate(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    let iid = required(p, "InstanceId")?;
    let pref = need_profile(p)?;
    let inst = req.kc.instance(&account, iid)?;
    let profile = req.kc.find_profile(&account, &pref)?;
    req.request_key("ec2:NewInstanceProfile", profile.arn());
    req.authorize_instance("ec2:AssociateIamInstanceProfile", &inst)?;
    req.authorize_pass_role(&profile, &inst.arn())?;
    if dry {
        return Err(dry_run_ok());
    }
    let a = req.kc.associate_profile(&account, iid, &pref).await?;
    let rid = req.request_id.clone();
    Ok(ec2_response("AssociateIamInstanceProfile", &rid, |w| {
        association_xml(
            w,
            "iamInstanceProfileAssociation",
            &inst.id,
            &a,
            "associating",
        );
    }))
}

async fn disassociate(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    let aid = required(p, "AssociationId")?;
    let inst = req.kc.association_instance(&account, aid)?;
    req.authorize_instance("ec2:DisassociateIamInstanceProfile", &inst)?;
    if dry {
        return Err(dry_run_ok());
    }
    let (iid, a) = req.kc.disassociate_profile(&account, aid).await?;
    let rid = req.request_id.clone();
    Ok(ec2_response("DisassociateIamInstanceProfile", &rid, |w| {
        association_xml(
            w,
            "iamInstanceProfileAssociation",
            &iid,
            &a,
            "disassociating",
        );
    }))
}

async fn replace(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    let aid = required(p, "AssociationId")?;
    let pref = need_profile(p)?;
    let inst = req.kc.association_instance(&account, aid)?;
    let profile = req.kc.find_profile(&account, &pref)?;
    req.request_key("ec2:NewInstanceProfile", profile.arn());
    req.authorize_instance("ec2:ReplaceIamInstanceProfileAssociation", &inst)?;
    req.authorize_pass_role(&profile, &inst.arn())?;
    if dry {
        return Err(dry_run_ok());
    }
    let (iid, a) = req.kc.replace_profile(&account, aid, &pref).await?;
    let rid = req.request_id.clone();
    Ok(ec2_response(
        "ReplaceIamInstanceProfileAssociation",
        &rid,
        |w| {
            association_xml(w, "iamInstanceProfileAssociation", &iid, &a, "associating");
        },
    ))
}

fn describe_associations(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    req.authorize_describe(dry)?;
    let wanted = ids(p, "AssociationId");
    if !wanted.is_empty() && p.contains("MaxResults") {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter AssociationIds cannot be used with the parameter MaxResults".into(),
        ));
    }
    let (after, limit) = page_params(p, 5)?;
    let all = req
        .kc
        .describe_associations(&account, &wanted, &filters(p))?;
    let mut page: Vec<&(String, ProfileAssociation)> = all
        .iter()
        .filter(|(_, a)| after.as_deref().is_none_or(|x| a.id.as_str() > x))
        .collect();
    let mut next = None;
    if let Some(l) = limit
        && page.len() > l
    {
        page.truncate(l);
        next = page.last().map(|(_, a)| ec2::next_token(&a.id));
    }
    let rid = req.request_id.clone();
    Ok(ec2_response(
        "DescribeIamInstanceProfileAssociations",
        &rid,
        |w| {
            w.start("iamInstanceProfileAssociationSet");
            for (iid, a) in &page {
                association_xml(w, "item", iid, a, &a.state);
            }
            w.end("iamInstanceProfileAssociationSet");
            if let Some(n) = &next {
                w.elem("nextToken", n);
            }
        },
    ))
}

async fn modify_metadata(req: &mut Req, p: &Params, dry: bool) -> Result<String, ServiceError> {
    let account = req.caller.account.clone();
    let iid = required(p, "InstanceId")?;
    let input = metadata_input(p);
    let inst = req.kc.instance(&account, iid)?;
    let m = input.apply(&inst.metadata)?;
    req.metadata_context(&m);
    req.authorize_instance("ec2:ModifyInstanceMetadataOptions", &inst)?;
    if dry {
        return Err(dry_run_ok());
    }
    let m = req
        .kc
        .modify_metadata_options(&account, iid, &input)
        .await?;
    let rid = req.request_id.clone();
    Ok(ec2_response("ModifyInstanceMetadataOptions", &rid, |w| {
        w.elem("instanceId", iid);
        metadata_xml(w, "instanceMetadataOptions", &m, "pending");
    }))
}
