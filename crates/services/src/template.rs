//! EC2 launch templates and their versions. A template holds numbered
//! versions of launch parameters (image, type, key, instance profile,
//! metadata options, user data, tags, network); RunInstances takes one
//! version's parameters as defaults that its own parameters override.

use serde::{Deserialize, Serialize};

use crate::ec2::{
    Filter, MetadataOptions, MetadataOptionsInput, check_filters, decode_user_data, hex_id,
    valid_instance_type, validate_tags, wildcard,
};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::state::State;
use crate::{Keycard, now};

/// Most versions a template keeps (AWS's quota).
pub const MAX_VERSIONS: u64 = 10_000;

/// MetadataOptions as a template stores them: only what was given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateMetadata {
    pub http_tokens: Option<String>,
    pub hop_limit: Option<u8>,
    pub http_endpoint: Option<String>,
    pub http_protocol_ipv6: Option<String>,
    pub instance_metadata_tags: Option<String>,
}

impl TemplateMetadata {
    /// As the RunInstances input the launch applies.
    pub fn as_input(&self) -> MetadataOptionsInput {
        MetadataOptionsInput {
            http_tokens: self.http_tokens.clone(),
            http_endpoint: self.http_endpoint.clone(),
            hop_limit: self.hop_limit.map(|h| h.to_string()),
            instance_metadata_tags: self.instance_metadata_tags.clone(),
        }
    }
}

/// TagSpecifications inside template data: tags for resources a launch
/// creates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagSpec {
    pub resource_type: String,
    pub tags: Vec<Tag>,
}

/// One NetworkInterfaces entry of template data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateNic {
    pub device_index: Option<u32>,
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub private_ip: Option<String>,
    pub associate_public_ip: Option<bool>,
    pub delete_on_termination: Option<bool>,
    pub description: Option<String>,
}

/// LaunchTemplateData: the launch parameters keycard models. A field
/// that is `None` (or empty) was not given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateData {
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub key_name: Option<String>,
    /// Base64, as given.
    pub user_data: Option<String>,
    pub profile_arn: Option<String>,
    pub profile_name: Option<String>,
    pub metadata: Option<TemplateMetadata>,
    #[serde(default)]
    pub tag_specs: Vec<TagSpec>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub network_interfaces: Vec<TemplateNic>,
    pub disable_api_termination: Option<bool>,
    pub ebs_optimized: Option<bool>,
}

fn or_vec<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
    if a.is_empty() { b.to_vec() } else { a.to_vec() }
}

impl TemplateData {
    /// CreateLaunchTemplateVersion with SourceVersion: the source's
    /// parameters, each top-level one the request gives replacing it.
    pub fn over(&self, source: &TemplateData) -> TemplateData {
        TemplateData {
            image_id: self.image_id.clone().or_else(|| source.image_id.clone()),
            instance_type: self
                .instance_type
                .clone()
                .or_else(|| source.instance_type.clone()),
            key_name: self.key_name.clone().or_else(|| source.key_name.clone()),
            user_data: self.user_data.clone().or_else(|| source.user_data.clone()),
            profile_arn: if self.profile_arn.is_some() || self.profile_name.is_some() {
                self.profile_arn.clone()
            } else {
                source.profile_arn.clone()
            },
            profile_name: if self.profile_arn.is_some() || self.profile_name.is_some() {
                self.profile_name.clone()
            } else {
                source.profile_name.clone()
            },
            metadata: self.metadata.clone().or_else(|| source.metadata.clone()),
            tag_specs: or_vec(&self.tag_specs, &source.tag_specs),
            security_group_ids: or_vec(&self.security_group_ids, &source.security_group_ids),
            security_groups: or_vec(&self.security_groups, &source.security_groups),
            network_interfaces: or_vec(&self.network_interfaces, &source.network_interfaces),
            disable_api_termination: self
                .disable_api_termination
                .or(source.disable_api_termination),
            ebs_optimized: self.ebs_optimized.or(source.ebs_optimized),
        }
    }

    /// The tags the data gives instances.
    pub fn instance_tags(&self) -> Vec<Tag> {
        self.tag_specs
            .iter()
            .filter(|s| s.resource_type == "instance")
            .flat_map(|s| s.tags.iter().cloned())
            .collect()
    }

    fn has_network(&self) -> bool {
        !self.security_group_ids.is_empty()
            || !self.security_groups.is_empty()
            || !self.network_interfaces.is_empty()
    }

    /// Whether the data names a network (subnet, groups or interfaces).
    pub fn gives_network(&self) -> bool {
        self.has_network()
    }
}

/// Resource types a template's TagSpecifications may tag.
const TAGGABLE: &[&str] = &[
    "instance",
    "volume",
    "network-interface",
    "spot-instances-request",
    "elastic-gpu",
];

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

/// Check template data as CreateLaunchTemplate(Version) does: values
/// must be well formed; whether the image or key exists is only a
/// warning (see [`warnings`]).
pub fn check_data(d: &TemplateData) -> Result<()> {
    if let Some(t) = &d.instance_type
        && !valid_instance_type(t)
    {
        return Err(invalid(format!("Invalid value '{t}' for InstanceType.")));
    }
    if let Some(u) = &d.user_data {
        decode_user_data(u)?;
    }
    if d.profile_arn.is_some() && d.profile_name.is_some() {
        return Err(ServiceError::InvalidParameterCombination(
            "The parameter 'iamInstanceProfile.arn' may not be used in combination with 'iamInstanceProfile.name'".into(),
        ));
    }
    if let Some(m) = &d.metadata {
        m.as_input().apply(&MetadataOptions::default())?;
        if let Some(v) = &m.http_protocol_ipv6
            && !matches!(v.as_str(), "enabled" | "disabled")
        {
            return Err(invalid(format!(
                "The value '{v}' is not valid for the 'HttpProtocolIpv6' parameter. Valid values: enabled, disabled"
            )));
        }
    }
    for s in &d.tag_specs {
        if !TAGGABLE.contains(&s.resource_type.as_str()) {
            return Err(invalid(format!(
                "'{}' is not a valid taggable resource type for this operation.",
                s.resource_type
            )));
        }
        validate_tags(&s.tags)?;
    }
    if d.network_interfaces.len() > 1
        || d.network_interfaces
            .iter()
            .any(|n| n.device_index.is_some_and(|i| i != 0))
    {
        return Err(ServiceError::UnsupportedOperation(
            "keycard instances have one network interface (DeviceIndex 0)".into(),
        ));
    }
    if let Some(k) = &d.key_name
        && (k.is_empty() || k.len() > 255)
    {
        return Err(invalid(format!("Invalid value '{k}' for KeyName")));
    }
    Ok(())
}

/// CreateLaunchTemplate's `Warning`: parameters that would fail a launch
/// (code, message), as AWS reports them without refusing the template.
pub fn warnings(
    st: &State,
    account: &str,
    region: &str,
    d: &TemplateData,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(id) = &d.image_id
        && let Err(e) = crate::image::resolve(st, account, region, id)
    {
        out.push((e.code().to_string(), e.message()));
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateVersion {
    pub number: u64,
    pub description: Option<String>,
    pub create_time: i64,
    pub created_by: String,
    pub data: TemplateData,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LaunchTemplate {
    /// `lt-` + 17 hex digits.
    pub id: String,
    pub account: String,
    pub region: String,
    pub name: String,
    pub create_time: i64,
    pub created_by: String,
    pub default_version: u64,
    pub latest_version: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Live versions, ascending.
    pub versions: Vec<TemplateVersion>,
}

impl LaunchTemplate {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:launch-template/{}",
            self.region, self.account, self.id
        )
    }

    pub fn version(&self, n: u64) -> Option<&TemplateVersion> {
        self.versions.iter().find(|v| v.number == n)
    }

    fn version_not_found(&self, v: &str) -> ServiceError {
        ServiceError::InvalidLaunchTemplateIdVersionNotFound(format!(
            "Could not find the specified version {v} for the launch template with ID {}.",
            self.id
        ))
    }

    /// A version as requests name it: a number, `$Latest` or `$Default`
    /// (none: the default).
    pub fn resolve(&self, spec: Option<&str>) -> Result<&TemplateVersion> {
        let n = match spec {
            None | Some("$Default") => self.default_version,
            Some("$Latest") => self.latest_version,
            Some(s) => s.parse::<u64>().map_err(|_| self.version_not_found(s))?,
        };
        self.version(n)
            .ok_or_else(|| self.version_not_found(&n.to_string()))
    }
}

/// How a request names a template.
#[derive(Debug, Clone)]
pub enum TemplateRef {
    Id(String),
    Name(String),
}

impl TemplateRef {
    /// From a request's `LaunchTemplateId` / `LaunchTemplateName`.
    pub fn from_params(id: Option<&str>, name: Option<&str>) -> Result<TemplateRef> {
        match (id, name) {
            (Some(_), Some(_)) => Err(ServiceError::InvalidParameterCombination(
                "The parameters LaunchTemplateId and LaunchTemplateName cannot be used together."
                    .into(),
            )),
            (Some(i), None) => Ok(TemplateRef::Id(i.to_string())),
            (None, Some(n)) => Ok(TemplateRef::Name(n.to_string())),
            (None, None) => Err(ServiceError::MissingParameter(
                "The request must contain the parameter LaunchTemplateName or LaunchTemplateId"
                    .into(),
            )),
        }
    }
}

/// `lt-` and 17 hex digits.
pub fn valid_template_id(id: &str) -> bool {
    id.strip_prefix("lt-")
        .is_some_and(|h| h.len() == 17 && h.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn id_not_found(id: &str) -> ServiceError {
    ServiceError::InvalidLaunchTemplateIdNotFound(format!(
        "The specified launch template, with template ID {id}, does not exist."
    ))
}

fn name_not_found(name: &str) -> ServiceError {
    ServiceError::InvalidLaunchTemplateNameNotFound(format!(
        "The specified launch template, with template name {name}, does not exist."
    ))
}

fn malformed_id(id: &str) -> ServiceError {
    ServiceError::InvalidLaunchTemplateIdMalformed(format!(
        "The specified ID for the launch template is not valid ({id}). A launch template ID must be in the format lt-xxxxxxxxxxxxxxxxx."
    ))
}

/// Template names: 3–128 of letters, digits and `( ) . - / _`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "().-/_".contains(c);
    if !(3..=128).contains(&name.len()) || !name.chars().all(ok) {
        return Err(ServiceError::InvalidLaunchTemplateNameMalformed(
            "A launch template name must be between 3 and 128 characters, and may contain letters, numbers, and the following characters: - ( ) . / _.".into(),
        ));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<()> {
    if d.is_some_and(|d| d.chars().count() > 255) {
        return Err(invalid(
            "Value for parameter versionDescription is invalid. Length exceeds maximum of 255",
        ));
    }
    Ok(())
}

/// The template a request names, in the caller's account and region.
pub fn find<'a>(
    st: &'a State,
    account: &str,
    region: &str,
    r: &TemplateRef,
) -> Result<&'a LaunchTemplate> {
    let mine = |t: &&LaunchTemplate| t.account == account && t.region == region;
    match r {
        TemplateRef::Id(id) => {
            if !valid_template_id(id) {
                return Err(malformed_id(id));
            }
            st.launch_templates
                .get(id)
                .filter(mine)
                .ok_or_else(|| id_not_found(id))
        }
        TemplateRef::Name(n) => st
            .launch_templates
            .values()
            .find(|t| mine(t) && &t.name == n)
            .ok_or_else(|| name_not_found(n)),
    }
}

const TEMPLATE_FILTERS: &[&str] = &["create-time", "launch-template-name", "tag-key"];

const VERSION_FILTERS: &[&str] = &[
    "create-time",
    "ebs-optimized",
    "http-endpoint",
    "http-protocol-ipv6",
    "http-tokens",
    "iam-instance-profile",
    "image-id",
    "instance-type",
    "is-default-version",
    "kernel-id",
    "ram-disk-id",
];

fn template_matches(t: &LaunchTemplate, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|p| wildcard(p, v));
    match f.name.as_str() {
        "create-time" => any(&crate::sts::iso8601(t.create_time)) || any(&iso_ms(t.create_time)),
        "launch-template-name" => any(&t.name),
        "tag-key" => t.tags.iter().any(|x| any(&x.key)),
        name => name
            .strip_prefix("tag:")
            .is_some_and(|k| t.tags.iter().any(|x| x.key == k && any(&x.value))),
    }
}

fn iso_ms(t: i64) -> String {
    let s = crate::sts::iso8601(t);
    format!("{}.000Z", s.trim_end_matches('Z'))
}

fn version_matches(t: &LaunchTemplate, v: &TemplateVersion, f: &Filter) -> bool {
    let any = |x: &str| f.values.iter().any(|p| wildcard(p, x));
    let opt = |x: Option<&str>| x.is_some_and(any);
    let d = &v.data;
    let m = d.metadata.clone().unwrap_or_default();
    match f.name.as_str() {
        "create-time" => any(&crate::sts::iso8601(v.create_time)) || any(&iso_ms(v.create_time)),
        "ebs-optimized" => opt(d.ebs_optimized.map(|b| if b { "true" } else { "false" })),
        "http-endpoint" => opt(m.http_endpoint.as_deref()),
        "http-protocol-ipv6" => opt(m.http_protocol_ipv6.as_deref()),
        "http-tokens" => opt(m.http_tokens.as_deref()),
        "iam-instance-profile" => opt(d.profile_arn.as_deref()) || opt(d.profile_name.as_deref()),
        "image-id" => opt(d.image_id.as_deref()),
        "instance-type" => opt(d.instance_type.as_deref()),
        "is-default-version" => any(if v.number == t.default_version {
            "true"
        } else {
            "false"
        }),
        _ => false,
    }
}

/// What CreateLaunchTemplate asks for.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub name: String,
    pub description: Option<String>,
    pub data: TemplateData,
    pub tags: Vec<Tag>,
    pub created_by: String,
}

/// Check a CreateLaunchTemplate request before anything is written.
pub fn check_new(n: &NewTemplate) -> Result<()> {
    check_name(&n.name)?;
    check_description(n.description.as_deref())?;
    check_data(&n.data)?;
    validate_tags(&n.tags)
}

/// Which versions DescribeLaunchTemplateVersions lists.
#[derive(Debug, Clone, Default)]
pub struct VersionQuery {
    pub template: Option<TemplateRef>,
    /// Numbers, `$Latest`, `$Default`.
    pub versions: Vec<String>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub filters: Vec<Filter>,
}

fn parse_bound(v: &Option<String>, field: &str) -> Result<Option<u64>> {
    v.as_deref()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| invalid(format!("Value ({s}) for parameter {field} is invalid.")))
        })
        .transpose()
}

/// The outcome of deleting one version: its number and, when it could
/// not be deleted, AWS's error code and message.
pub type VersionDeletion = (u64, Option<(&'static str, String)>);

impl Keycard {
    /// CreateLaunchTemplate: version 1, the default.
    pub async fn create_launch_template(
        &self,
        account: &str,
        region: &str,
        n: NewTemplate,
    ) -> Result<LaunchTemplate> {
        check_new(&n)?;
        self.mutate(|st| {
            if st
                .launch_templates
                .values()
                .any(|t| t.account == account && t.region == region && t.name == n.name)
            {
                return Err(ServiceError::InvalidLaunchTemplateNameAlreadyExists(
                    "Launch template name already in use.".into(),
                ));
            }
            let t = now();
            let lt = LaunchTemplate {
                id: hex_id("lt-"),
                account: account.into(),
                region: region.into(),
                name: n.name.clone(),
                create_time: t,
                created_by: n.created_by.clone(),
                default_version: 1,
                latest_version: 1,
                tags: n.tags.clone(),
                versions: vec![TemplateVersion {
                    number: 1,
                    description: n.description.clone(),
                    create_time: t,
                    created_by: n.created_by.clone(),
                    data: n.data.clone(),
                }],
            };
            Ok((vec![Change::Put(Entity::LaunchTemplate(lt.clone()))], lt))
        })
        .await
    }

    /// The template a request names (for its authorization check).
    pub fn launch_template(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
    ) -> Result<LaunchTemplate> {
        let st = self.state();
        find(&st, account, region, r).cloned()
    }

    /// CreateLaunchTemplateVersion: a new latest version, from the data
    /// given over SourceVersion's when one is named.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_template_version(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
        source: Option<&str>,
        description: Option<String>,
        data: TemplateData,
        created_by: &str,
    ) -> Result<(LaunchTemplate, TemplateVersion)> {
        check_description(description.as_deref())?;
        check_data(&data)?;
        self.mutate(|st| {
            let lt = find(st, account, region, r)?;
            let merged = match source {
                Some(s) => data.over(&lt.resolve(Some(s))?.data),
                None => data.clone(),
            };
            if lt.latest_version >= MAX_VERSIONS {
                return Err(ServiceError::InvalidParameterValue(format!(
                    "You've reached the maximum number of versions ({MAX_VERSIONS}) for launch template {}.",
                    lt.id
                )));
            }
            let v = TemplateVersion {
                number: lt.latest_version + 1,
                description: description.clone(),
                create_time: now(),
                created_by: created_by.to_string(),
                data: merged,
            };
            let mut n = lt.clone();
            n.latest_version = v.number;
            n.versions.push(v.clone());
            Ok((vec![Change::Put(Entity::LaunchTemplate(n.clone()))], (n, v)))
        })
        .await
    }

    /// ModifyLaunchTemplate: set the default version.
    pub async fn set_default_version(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
        version: Option<&str>,
    ) -> Result<LaunchTemplate> {
        self.mutate(|st| {
            let lt = find(st, account, region, r)?;
            let mut n = lt.clone();
            if let Some(v) = version {
                n.default_version = lt.resolve(Some(v))?.number;
            }
            let changes = if n == *lt {
                Vec::new()
            } else {
                vec![Change::Put(Entity::LaunchTemplate(n.clone()))]
            };
            Ok((changes, n))
        })
        .await
    }

    /// DescribeLaunchTemplates, sorted by id; ids and names asked for
    /// must exist.
    pub fn describe_launch_templates(
        &self,
        account: &str,
        region: &str,
        ids: &[String],
        names: &[String],
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplate>> {
        check_filters(filters, TEMPLATE_FILTERS)?;
        let st = self.state();
        for id in ids {
            find(&st, account, region, &TemplateRef::Id(id.clone())).map_err(|e| match e {
                ServiceError::InvalidLaunchTemplateIdNotFound(_) => {
                    ServiceError::InvalidLaunchTemplateIdNotFound(
                        "At least one of the launch templates specified in the request does not exist.".into(),
                    )
                }
                other => other,
            })?;
        }
        for n in names {
            check_name(n)?;
            find(&st, account, region, &TemplateRef::Name(n.clone())).map_err(|_| {
                ServiceError::InvalidLaunchTemplateNameNotFound(
                    "At least one of the launch templates specified in the request does not exist."
                        .into(),
                )
            })?;
        }
        Ok(st
            .launch_templates
            .values()
            .filter(|t| t.account == account && t.region == region)
            .filter(|t| {
                ids.is_empty() && names.is_empty() || ids.contains(&t.id) || names.contains(&t.name)
            })
            .filter(|t| filters.iter().all(|f| template_matches(t, f)))
            .cloned()
            .collect())
    }

    /// DescribeLaunchTemplateVersions: (template, version) pairs, each
    /// template's newest version first.
    pub fn describe_template_versions(
        &self,
        account: &str,
        region: &str,
        q: &VersionQuery,
    ) -> Result<Vec<(LaunchTemplate, TemplateVersion)>> {
        check_filters(&q.filters, VERSION_FILTERS)?;
        let min = parse_bound(&q.min, "MinVersion")?;
        let max = parse_bound(&q.max, "MaxVersion")?;
        let st = self.state();
        let templates: Vec<&LaunchTemplate> = match &q.template {
            Some(r) => vec![find(&st, account, region, r)?],
            None => {
                // Without a template, only $Latest / $Default make sense.
                if q.versions.is_empty()
                    || q.versions.iter().any(|v| v != "$Latest" && v != "$Default")
                {
                    return Err(ServiceError::MissingParameter(
                        "The request must contain the parameter LaunchTemplateName or LaunchTemplateId".into(),
                    ));
                }
                st.launch_templates
                    .values()
                    .filter(|t| t.account == account && t.region == region)
                    .collect()
            }
        };
        let mut out = Vec::new();
        for t in templates {
            let mut chosen: Vec<u64> = Vec::new();
            for v in &q.versions {
                chosen.push(t.resolve(Some(v))?.number);
            }
            let mut vs: Vec<&TemplateVersion> = t
                .versions
                .iter()
                .filter(|v| chosen.is_empty() || chosen.contains(&v.number))
                .filter(|v| min.is_none_or(|m| v.number >= m) && max.is_none_or(|m| v.number <= m))
                .filter(|v| q.filters.iter().all(|f| version_matches(t, v, f)))
                .collect();
            vs.sort_by_key(|v| std::cmp::Reverse(v.number));
            out.extend(vs.into_iter().map(|v| (t.clone(), v.clone())));
        }
        Ok(out)
    }

    /// DeleteLaunchTemplate: the template and every version.
    pub async fn delete_launch_template(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
    ) -> Result<LaunchTemplate> {
        self.mutate(|st| {
            let lt = find(st, account, region, r)?;
            Ok((
                vec![Change::Delete("launch_template", lt.id.clone())],
                lt.clone(),
            ))
        })
        .await
    }

    /// DeleteLaunchTemplateVersions: each version deleted or refused on
    /// its own (the default version cannot be deleted).
    pub async fn delete_template_versions(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
        versions: &[String],
    ) -> Result<(LaunchTemplate, Vec<VersionDeletion>)> {
        if versions.is_empty() {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter LaunchTemplateVersion".into(),
            ));
        }
        self.mutate(|st| {
            let lt = find(st, account, region, r)?;
            let mut n = lt.clone();
            let mut results = Vec::new();
            for v in versions {
                let Ok(num) = v.parse::<u64>() else {
                    results.push((
                        0,
                        Some((
                            "launchTemplateVersionDoesNotExist",
                            format!("The specified launch template version {v} does not exist."),
                        )),
                    ));
                    continue;
                };
                let outcome = if num == n.default_version {
                    Some((
                        "unexpectedError",
                        "Cannot delete the default version of a launch template. Use DeleteLaunchTemplate to delete the launch template.".to_string(),
                    ))
                } else if n.version(num).is_none() {
                    Some((
                        "launchTemplateVersionDoesNotExist",
                        "The specified launch template version does not exist.".to_string(),
                    ))
                } else {
                    n.versions.retain(|x| x.number != num);
                    None
                };
                results.push((num, outcome));
            }
            let changes = if n == *lt {
                Vec::new()
            } else {
                vec![Change::Put(Entity::LaunchTemplate(n.clone()))]
            };
            Ok((changes, (n, results)))
        })
        .await
    }

    /// The template version a RunInstances `LaunchTemplate` names.
    pub fn launch_version(
        &self,
        account: &str,
        region: &str,
        r: &TemplateRef,
        version: Option<&str>,
    ) -> Result<(LaunchTemplate, TemplateVersion)> {
        let st = self.state();
        let lt = find(&st, account, region, r)?;
        let v = lt.resolve(version)?.clone();
        Ok((lt.clone(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt() -> LaunchTemplate {
        let v = |n| TemplateVersion {
            number: n,
            description: None,
            create_time: 0,
            created_by: String::new(),
            data: TemplateData::default(),
        };
        LaunchTemplate {
            id: "lt-0123456789abcdef0".into(),
            account: "a".into(),
            region: "r".into(),
            name: "n".into(),
            create_time: 0,
            created_by: String::new(),
            default_version: 1,
            latest_version: 3,
            tags: vec![],
            versions: vec![v(1), v(3)],
        }
    }

    #[test]
    fn versions_resolve_by_alias_and_number() {
        let t = lt();
        assert_eq!(t.resolve(None).unwrap().number, 1);
        assert_eq!(t.resolve(Some("$Latest")).unwrap().number, 3);
        assert_eq!(t.resolve(Some("3")).unwrap().number, 3);
        assert!(t.resolve(Some("2")).is_err());
        assert!(t.resolve(Some("latest")).is_err());
    }

    #[test]
    fn source_version_merge_replaces_given_fields_only() {
        let src = TemplateData {
            image_id: Some("ami-1".into()),
            instance_type: Some("t3.micro".into()),
            profile_name: Some("p".into()),
            ..Default::default()
        };
        let new = TemplateData {
            instance_type: Some("t3.large".into()),
            profile_arn: Some("arn".into()),
            ..Default::default()
        };
        let m = new.over(&src);
        assert_eq!(m.image_id.as_deref(), Some("ami-1"));
        assert_eq!(m.instance_type.as_deref(), Some("t3.large"));
        assert_eq!(
            (m.profile_arn.as_deref(), m.profile_name),
            (Some("arn"), None)
        );
    }

    #[test]
    fn names_and_ids() {
        assert!(check_name("web-(v1)/a_b.c").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name("a b c").is_err());
        assert!(valid_template_id("lt-0123456789abcdef0"));
        assert!(!valid_template_id("lt-123"));
    }
}
