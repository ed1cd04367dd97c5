//! RunInstances' launch-path parts: the launch template it may name
//! (its version's parameters are defaults the request's own override),
//! and the checks on the image, the key pair and the template, each
//! with `ec2:IsLaunchTemplateResource` saying whether the template chose
//! that resource, and `ec2:LaunchTemplate` on every check of the call.

use keycard_proto::query::Params;
use keycard_services::ServiceError;
use keycard_services::auth::Check;
use keycard_services::ec2::{Instance, ProfileRef, RunInput};
use keycard_services::image::Image;
use keycard_services::keypair::KeyPair;
use keycard_services::model::Tag;
use keycard_services::template::{
    LaunchTemplate, TagSpec, TemplateData, TemplateMetadata, TemplateNic, TemplateRef,
    TemplateVersion,
};

use crate::Req;

/// The template version a RunInstances `LaunchTemplate` names, if any.
pub(crate) fn launch_template(
    req: &Req,
    p: &Params,
) -> Result<Option<(LaunchTemplate, TemplateVersion)>, ServiceError> {
    let s = p.sub("LaunchTemplate");
    if s.is_empty() {
        return Ok(None);
    }
    let r = TemplateRef::from_params(s.get("LaunchTemplateId"), s.get("LaunchTemplateName"))?;
    let found = req
        .kc
        .launch_version(&req.caller.account, &req.region, &r, s.get("Version"))?;
    Ok(Some(found))
}

/// Which of a launch's resources its template chose.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FromTemplate {
    pub image: bool,
    pub key: bool,
    pub network: bool,
}

/// Whether the request names any network part itself.
fn request_network(p: &Params) -> bool {
    p.contains("SubnetId")
        || !p.list("SecurityGroupId").is_empty()
        || !p.list("SecurityGroup").is_empty()
        || !p.structs("NetworkInterface").is_empty()
}

/// Template tags first, the request's replacing any with the same key.
fn merged_tags(template: Vec<Tag>, request: Vec<Tag>) -> Vec<Tag> {
    let mut out: Vec<Tag> = template
        .into_iter()
        .filter(|t| !request.iter().any(|r| r.key == t.key))
        .collect();
    out.extend(request);
    out
}

/// The request's parameters over the template's: each one the request
/// gives wins; the network comes whole from one or the other.
pub(crate) fn with_template(
    p: &Params,
    mut input: RunInput,
    data: Option<&TemplateData>,
) -> (RunInput, FromTemplate) {
    let Some(d) = data else {
        return (input, FromTemplate::default());
    };
    let mut from = FromTemplate::default();
    if input.image_id.is_empty()
        && let Some(i) = &d.image_id
    {
        input.image_id = i.clone();
        from.image = true;
    }
    if input.instance_type.is_none() {
        input.instance_type = d.instance_type.clone();
    }
    if input.key_name.is_none() && d.key_name.is_some() {
        input.key_name = d.key_name.clone();
        from.key = true;
    }
    if input.profile.is_none() {
        input.profile = match (&d.profile_arn, &d.profile_name) {
            (Some(a), _) => Some(ProfileRef::Arn(a.clone())),
            (None, Some(n)) => Some(ProfileRef::Name(n.clone())),
            (None, None) => None,
        };
    }
    if input.metadata.is_empty()
        && let Some(m) = &d.metadata
    {
        input.metadata = m.as_input();
    }
    if input.user_data.is_none() {
        input.user_data = d.user_data.clone();
    }
    input.tags = merged_tags(d.instance_tags(), std::mem::take(&mut input.tags));
    if !request_network(p) && d.gives_network() {
        from.network = true;
        let n = &mut input.network;
        n.group_ids = d.security_group_ids.clone();
        n.group_names = d.security_groups.clone();
        if let Some(nic) = d.network_interfaces.first() {
            n.subnet_id = nic.subnet_id.clone();
            if !nic.groups.is_empty() {
                n.group_ids = nic.groups.clone();
            }
            if input.private_ip.is_none() {
                input.private_ip = nic.private_ip.clone();
            }
        }
    }
    (input, from)
}

/// A check with `ec2:IsLaunchTemplateResource` when the call uses a
/// template (`None`: it does not).
pub(crate) fn from_template(c: Check<'_>, lt: Option<bool>) -> Check<'_> {
    match lt {
        Some(b) => c.key(
            "ec2:IsLaunchTemplateResource",
            if b { "true" } else { "false" },
        ),
        None => c,
    }
}

impl Req {
    /// ec2:RunInstances on the image, with `ec2:Owner` (`amazon` for
    /// Amazon's) and `ec2:Public`.
    pub(crate) fn authorize_image(
        &mut self,
        i: &Image,
        lt: Option<bool>,
    ) -> Result<(), ServiceError> {
        let owner = match i.owner_alias.as_deref() {
            Some("amazon") => "amazon".to_string(),
            _ => i.account.clone(),
        };
        let c = Check::new("ec2:RunInstances", i.arn())
            .tags(Some("ec2"), &i.tags)
            .key("ec2:Owner", owner)
            .key("ec2:Public", if i.public { "true" } else { "false" })
            .key("ec2:ImageType", "machine")
            .key("ec2:RootDeviceType", "ebs")
            .key("ec2:Region", self.region.clone());
        self.check(from_template(c, lt))
    }

    /// ec2:RunInstances on the key pair, with its tags.
    pub(crate) fn authorize_key_pair(
        &mut self,
        k: &KeyPair,
        lt: Option<bool>,
    ) -> Result<(), ServiceError> {
        let c = Check::new("ec2:RunInstances", k.arn())
            .account(k.account.clone())
            .tags(Some("ec2"), &k.tags)
            .key("ec2:KeyPairName", k.name.clone())
            .key("ec2:KeyPairType", k.key_type.clone())
            .key("ec2:Region", self.region.clone());
        self.check(from_template(c, lt))
    }

    /// ec2:RunInstances on the launch template itself, with its tags.
    pub(crate) fn authorize_launch_template(
        &mut self,
        t: &LaunchTemplate,
    ) -> Result<(), ServiceError> {
        self.audit
            .resources
            .push((t.arn(), "AWS::EC2::LaunchTemplate".into()));
        let c = Check::new("ec2:RunInstances", t.arn())
            .account(t.account.clone())
            .tags(Some("ec2"), &t.tags)
            .key("ec2:Region", self.region.clone());
        self.check(c)
    }
}

/// GetLaunchTemplateData: an instance's launch parameters.
pub(crate) fn instance_template_data(i: &Instance) -> TemplateData {
    let m = &i.metadata;
    let net = keycard_services::vpc::interface_of(i);
    TemplateData {
        image_id: Some(i.image_id.clone()),
        instance_type: Some(i.instance_type.clone()),
        key_name: i.key_name.clone(),
        user_data: i.user_data.clone(),
        profile_arn: i.profile.as_ref().map(|a| a.profile_arn.clone()),
        profile_name: None,
        metadata: Some(TemplateMetadata {
            http_tokens: Some(m.http_tokens.clone()),
            hop_limit: Some(m.hop_limit),
            http_endpoint: Some(m.http_endpoint.clone()),
            http_protocol_ipv6: Some("disabled".into()),
            instance_metadata_tags: Some(m.instance_metadata_tags.clone()),
        }),
        tag_specs: if i.tags.is_empty() {
            Vec::new()
        } else {
            vec![TagSpec {
                resource_type: "instance".into(),
                tags: i.tags.clone(),
            }]
        },
        security_group_ids: Vec::new(),
        security_groups: Vec::new(),
        network_interfaces: net
            .map(|e| {
                vec![TemplateNic {
                    device_index: Some(0),
                    subnet_id: Some(e.subnet_id.clone()),
                    groups: e.groups.iter().map(|g| g.id.clone()).collect(),
                    private_ip: i.private_ip.clone(),
                    associate_public_ip: Some(false),
                    delete_on_termination: Some(true),
                    description: None,
                }]
            })
            .unwrap_or_default(),
        disable_api_termination: Some(false),
        ebs_optimized: Some(false),
    }
}
