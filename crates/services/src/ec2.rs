//! EC2 instances, their instance-profile associations and metadata
//! options: the part of EC2 that decides what an instance's IMDS serves.
//! No machines run; an instance is a record whose state and role the
//! metadata service and the credential checks follow.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServiceError};
use crate::instance_attrs::InstanceAttrs;
use crate::model::{Change, Entity, InstanceProfile, Tag};
use crate::network::{self, InstanceNetwork, LaunchNetwork, Placement};
use crate::state::State;
use crate::sts::Session;
use crate::volume::{self, VolumeSpec};
use crate::vpc::NetworkInterface;
use crate::{Keycard, crypto, now, vpc};

/// The private DNS name of address `ip` in `region`:
/// `ip-10-0-1-4.ec2.internal` in us-east-1, else
/// `ip-10-0-1-4.<region>.compute.internal`.
pub(crate) fn private_dns_name(region: &str, ip: &str) -> String {
    let ip = ip.replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{ip}.ec2.internal")
    } else {
        format!("ip-{ip}.{region}.compute.internal")
    }
}

/// Most instances one RunInstances call launches.
pub const MAX_RUN_COUNT: u32 = 1000;
/// Largest user data, decoded (AWS: 16 KB).
pub const MAX_USER_DATA: usize = 16 * 1024;
/// Instance slots: each live instance holds one; it picks its private IP
/// and its loopback IMDS address.
const MAX_SLOTS: u32 = 240 * 254;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileAssociation {
    /// `iip-assoc-…`
    pub id: String,
    pub profile_arn: String,
    pub profile_id: String,
    /// associating | associated | disassociating | disassociated
    pub state: String,
    #[serde(default)]
    pub timestamp: i64,
}

/// How the instance's metadata service answers (ModifyInstanceMetadataOptions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetadataOptions {
    /// optional | required
    pub http_tokens: String,
    /// enabled | disabled
    pub http_endpoint: String,
    /// IP TTL of the token response, 1..=64.
    pub hop_limit: u8,
    /// enabled | disabled: tags under `meta-data/tags/instance`.
    pub instance_metadata_tags: String,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            http_tokens: "optional".into(),
            http_endpoint: "enabled".into(),
            hop_limit: 1,
            instance_metadata_tags: "disabled".into(),
        }
    }
}

/// Partial metadata options as a request gives them.
#[derive(Debug, Clone, Default)]
pub struct MetadataOptionsInput {
    pub http_tokens: Option<String>,
    pub http_endpoint: Option<String>,
    pub hop_limit: Option<String>,
    pub instance_metadata_tags: Option<String>,
}

impl MetadataOptionsInput {
    pub fn is_empty(&self) -> bool {
        self.http_tokens.is_none()
            && self.http_endpoint.is_none()
            && self.hop_limit.is_none()
            && self.instance_metadata_tags.is_none()
    }

    /// Validate and apply to `base`.
    pub fn apply(&self, base: &MetadataOptions) -> Result<MetadataOptions> {
        let mut m = base.clone();
        let one_of = |v: &str, field: &str, allowed: &[&str]| -> Result<String> {
            if allowed.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(ServiceError::InvalidParameterValue(format!(
                    "The value '{v}' is not valid for the '{field}' parameter. Valid values: {}",
                    allowed.join(", ")
                )))
            }
        };
        if let Some(v) = &self.http_tokens {
            m.http_tokens = one_of(v, "HttpTokens", &["optional", "required"])?;
        }
        if let Some(v) = &self.http_endpoint {
            m.http_endpoint = one_of(v, "HttpEndpoint", &["enabled", "disabled"])?;
        }
        if let Some(v) = &self.instance_metadata_tags {
            m.instance_metadata_tags = one_of(v, "InstanceMetadataTags", &["enabled", "disabled"])?;
        }
        if let Some(v) = &self.hop_limit {
            m.hop_limit = v
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    ServiceError::InvalidParameterValue(format!(
                        "The value '{v}' is not valid for the 'HttpPutResponseHopLimit' parameter. It must be an integer from 1 to 64."
                    ))
                })?;
        }
        Ok(m)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account: String,
    /// pending | running | stopping | stopped | shutting-down | terminated
    pub state: String,
    #[serde(default)]
    pub profile: Option<ProfileAssociation>,
    #[serde(default)]
    pub private_ip: Option<String>,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub instance_type: String,
    #[serde(default)]
    pub key_name: Option<String>,
    /// The key pair's public key as it was at launch (served at
    /// `public-keys/0/openssh-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default)]
    pub launch_time: i64,
    #[serde(default)]
    pub reservation_id: String,
    #[serde(default)]
    pub launch_index: u32,
    /// Base64 as given.
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub metadata: MetadataOptions,
    #[serde(default)]
    pub slot: u32,
    #[serde(default)]
    pub client_token: Option<String>,
    /// Why the instance last changed state (`User initiated (…)`).
    #[serde(default)]
    pub state_reason: Option<String>,
    /// Its VPC, subnet and security groups; `None` on records from before
    /// keycard stored them: the default subnet and group (vpc.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<InstanceNetwork>,
    /// The node running its metadata service (`None`: from before nodes,
    /// `nodes::DEFAULT_NODE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Termination and stop protection, shutdown behaviour, … (instance_attrs.rs).
    #[serde(default)]
    pub attrs: InstanceAttrs,
    /// How its metadata service is doing. Runtime only: listeners are
    /// opened again at every start.
    #[serde(skip)]
    pub imds: ImdsHealth,
}

/// The state of an instance's metadata listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImdsHealth {
    /// Not opened yet: DescribeInstanceStatus says `initializing`.
    #[default]
    Unknown,
    /// Listening at this address: 169.254.169.254 inside the instance's
    /// namespace; else the slot's own, or another one when a different
    /// server on the host already holds the slot's address.
    Serving(Ipv4Addr),
    /// Could not open: DescribeInstanceStatus shows the instance impaired.
    Failed {
        /// Epoch seconds of the first failure.
        since: i64,
        reason: String,
    },
}

impl Instance {
    pub fn is_terminated(&self) -> bool {
        self.state == "terminated"
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:instance/{}",
            self.region, self.account, self.id
        )
    }

    /// Its subnet's zone.
    pub fn availability_zone(&self) -> String {
        match &self.network {
            Some(n) => n.zone.clone(),
            None => format!("{}a", self.region),
        }
    }

    /// `ip-172-31-16-1.ec2.internal`, as AWS names it per region.
    pub fn private_dns(&self) -> String {
        private_dns_name(
            &self.region,
            self.private_ip.as_deref().unwrap_or("0.0.0.0"),
        )
    }

    /// A stable MAC address for the primary interface.
    pub fn mac(&self) -> String {
        let s = self.slot;
        format!(
            "0e:6b:{:02x}:{:02x}:{:02x}:01",
            (s >> 16) & 0xff,
            (s >> 8) & 0xff,
            s & 0xff
        )
    }

    /// The loopback address whose IMDS answers this instance alone: where
    /// its listener really is, else the one its slot picks.
    pub fn imds_addr(&self) -> Ipv4Addr {
        match &self.imds {
            ImdsHealth::Serving(a) => *a,
            _ => self.slot_imds_addr(),
        }
    }

    /// The address the instance's slot picks (`127.77.A.B`); taken first.
    pub fn slot_imds_addr(&self) -> Ipv4Addr {
        let (a, b) = slot_octets(self.slot);
        Ipv4Addr::new(127, 77, a, b)
    }

    /// Why the instance's metadata service is down, if it is.
    pub fn imds_failure(&self) -> Option<(i64, &str)> {
        match &self.imds {
            ImdsHealth::Failed { since, reason } => Some((*since, reason.as_str())),
            _ => None,
        }
    }

    /// The role delivered to this instance, if associated and running.
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// AWS's numeric code for the state name.
    pub fn state_code(&self) -> u32 {
        state_code(&self.state)
    }
}

pub fn state_code(state: &str) -> u32 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    }
}

fn slot_octets(slot: u32) -> (u8, u8) {
    ((slot / 254) as u8, (slot % 254 + 1) as u8)
}

/// A profile named by `Name` or `Arn` in a request.
#[derive(Debug, Clone)]
pub enum ProfileRef {
    Name(String),
    Arn(String),
}

/// RunInstances input, already split into fields.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    pub image_id: String,
    pub instance_type: Option<String>,
    pub min_count: u32,
    pub max_count: u32,
    pub key_name: Option<String>,
    pub profile: Option<ProfileRef>,
    pub metadata: MetadataOptionsInput,
    pub user_data: Option<String>,
    pub tags: Vec<Tag>,
    pub private_ip: Option<String>,
    pub client_token: Option<String>,
    /// SubnetId, SecurityGroupIds and SecurityGroups.
    pub network: LaunchNetwork,
    /// DisableApiTermination, InstanceInitiatedShutdownBehavior, …
    pub attrs: InstanceAttrs,
    /// BlockDeviceMappings with an `Ebs` part, by device name.
    pub block_devices: Vec<(String, VolumeSpec)>,
    /// TagSpecifications for the volumes and the primary interface each
    /// instance launches with.
    pub volume_tags: Vec<Tag>,
    pub eni_tags: Vec<Tag>,
}

/// One instance's state change.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub id: String,
    pub previous: String,
    pub current: String,
}

/// Which state change a call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOp {
    Start,
    Stop,
    Terminate,
}

/// A DescribeInstances filter: name and values (with `*` / `?` wildcards).
#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

/// `prefix` + 17 random hex digits, as AWS's resource ids.
pub(crate) fn hex_id(prefix: &str) -> String {
    let b = crypto::random_bytes::<9>();
    let mut h = hex::encode(b);
    h.truncate(17);
    format!("{prefix}{h}")
}

/// `i-` plus 8 or 17 lowercase hex digits.
pub fn valid_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|c| c.is_ascii_hexdigit())
    })
}

/// `t3.micro`, `m7g.large`, `u-6tb1.metal` …
pub fn valid_instance_type(t: &str) -> bool {
    let Some((family, size)) = t.split_once('.') else {
        return false;
    };
    !family.is_empty()
        && !size.is_empty()
        && t.len() <= 32
        && family.starts_with(|c: char| c.is_ascii_lowercase())
        && family
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && size
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Validate tags as EC2 does.
pub fn validate_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > 50 {
        return Err(ServiceError::InvalidParameterValue(
            "The number of tags exceeds the limit of 50".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(invalid(format!(
                "Tag key '{}' must be between 1 and 128 characters",
                t.key
            )));
        }
        if t.value.chars().count() > 256 {
            return Err(invalid(format!(
                "Tag value for key '{}' exceeds 256 characters",
                t.key
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "Tag keys starting with 'aws:' are reserved for internal use".to_string(),
            ));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(invalid(format!("Duplicate tag key '{}' specified.", t.key)));
        }
    }
    Ok(())
}

/// `*` and `?` wildcard match, as EC2 filters use.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while let Some(&tc) = t.get(ti) {
        let pc = p.get(pi).copied();
        if pc == Some('?') || pc == Some(tc) {
            pi += 1;
            ti += 1;
        } else if pc == Some('*') {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

const INSTANCE_FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "iam-instance-profile.arn",
    "iam-instance-profile.id",
    "private-ip-address",
    "private-dns-name",
    "reservation-id",
    "availability-zone",
    "key-name",
    "tag-key",
    "tag-value",
    "owner-id",
    "metadata-options.http-tokens",
    "metadata-options.http-endpoint",
    "metadata-options.http-put-response-hop-limit",
    "metadata-options.instance-metadata-tags",
];

/// DescribeInstances' filters: the instance's own and its network's.
fn check_instance_filters(filters: &[Filter]) -> Result<()> {
    let known: Vec<&str> = INSTANCE_FILTERS
        .iter()
        .chain(vpc::INSTANCE_NETWORK_FILTERS)
        .copied()
        .collect();
    check_filters(filters, &known)
}

/// Reject unknown filter names before anything is read.
pub fn check_filters(filters: &[Filter], known: &[&str]) -> Result<()> {
    for f in filters {
        if !(known.contains(&f.name.as_str()) || f.name.starts_with("tag:") && f.name.len() > 4) {
            return Err(invalid(format!("The filter '{}' is invalid", f.name)));
        }
        if f.values.is_empty() {
            return Err(invalid(format!(
                "The filter '{}' must have at least one value",
                f.name
            )));
        }
    }
    Ok(())
}

/// Whether an instance matches a filter; `secondary`: the interfaces
/// attached beside its primary one.
fn instance_matches(i: &Instance, secondary: &[NetworkInterface], f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|p| wildcard(p, v));
    let opt = |v: Option<&str>| v.is_some_and(any);
    match f.name.as_str() {
        "instance-id" => any(&i.id),
        "instance-state-name" => any(&i.state),
        "instance-state-code" => any(&i.state_code().to_string()),
        "instance-type" => any(&i.instance_type),
        "image-id" => any(&i.image_id),
        "iam-instance-profile.arn" => opt(i.profile.as_ref().map(|a| a.profile_arn.as_str())),
        "iam-instance-profile.id" => opt(i.profile.as_ref().map(|a| a.profile_id.as_str())),
        "private-ip-address" => opt(i.private_ip.as_deref()),
        "private-dns-name" => any(&i.private_dns()),
        "reservation-id" => any(&i.reservation_id),
        "availability-zone" => any(&i.availability_zone()),
        "key-name" => opt(i.key_name.as_deref()),
        "owner-id" => any(&i.account),
        "tag-key" => i.tags.iter().any(|t| any(&t.key)),
        "tag-value" => i.tags.iter().any(|t| any(&t.value)),
        "metadata-options.http-tokens" => any(&i.metadata.http_tokens),
        "metadata-options.http-endpoint" => any(&i.metadata.http_endpoint),
        "metadata-options.http-put-response-hop-limit" => any(&i.metadata.hop_limit.to_string()),
        "metadata-options.instance-metadata-tags" => any(&i.metadata.instance_metadata_tags),
        name => match name.strip_prefix("tag:") {
            Some(k) => i.tags.iter().any(|t| t.key == k && any(&t.value)),
            None => {
                vpc::instance_fact(i, secondary, name).is_some_and(|v| v.iter().any(|x| any(x)))
            }
        },
    }
}

/// Opaque pagination token: the last id of the previous page.
pub fn next_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("kc1:{last}"))
}

pub fn parse_next_token(token: &str) -> Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("kc1:").map(str::to_string))
        .ok_or_else(|| ServiceError::InvalidParameterValue(format!("Invalid NextToken: {token}")))
}

/// Check MaxResults against EC2's bounds.
pub fn max_results(v: Option<&str>, min: usize, max: usize) -> Result<Option<usize>> {
    match v {
        None => Ok(None),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "Value ( {s} ) for parameter maxResults is invalid. Expecting a value between {min} and {max}."
                ))
            }),
    }
}

fn not_found(ids: &[&str]) -> ServiceError {
    if let [id] = ids {
        ServiceError::InvalidInstanceIdNotFound(format!("The instance ID '{id}' does not exist"))
    } else {
        ServiceError::InvalidInstanceIdNotFound(format!(
            "The instance IDs '{}' do not exist",
            ids.join(", ")
        ))
    }
}

/// The one instance `id` names in `account`, with `lookup`'s checks and errors.
pub(crate) fn lookup_one<'a>(st: &'a State, account: &str, id: &str) -> Result<&'a Instance> {
    lookup(st, account, &[id.to_string()])?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(&[id]))
}

/// Check instance ids: malformed ones first, then unknown ones.
fn lookup<'a>(st: &'a State, account: &str, ids: &[String]) -> Result<Vec<&'a Instance>> {
    for id in ids {
        if !valid_instance_id(id) {
            return Err(ServiceError::InvalidInstanceIdMalformed(format!(
                "Invalid id: \"{id}\""
            )));
        }
    }
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| st.instances.get(*id).is_none_or(|i| i.account != account))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(not_found(&missing));
    }
    let mut seen = BTreeSet::new();
    Ok(ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .filter_map(|id| st.instances.get(id).map(|i| &**i))
        .collect())
}

fn parse_arn_profile(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, res) = rest.split_once(':')?;
    let path_name = res.strip_prefix("instance-profile/")?;
    let name = path_name.rsplit('/').next()?;
    (account.len() == 12 && !name.is_empty()).then(|| (account.to_string(), name.to_string()))
}

/// Find the profile a request names, in the caller's account.
pub fn resolve_profile<'a>(
    st: &'a State,
    account: &str,
    r: &ProfileRef,
) -> Result<&'a InstanceProfile> {
    let (field, value, found) = match r {
        ProfileRef::Name(n) => ("name", n.as_str(), st.instance_profile(account, n)),
        ProfileRef::Arn(a) => (
            "arn",
            a.as_str(),
            parse_arn_profile(a)
                .filter(|(acct, _)| acct == account)
                .and_then(|(acct, n)| st.instance_profile(&acct, &n))
                .filter(|p| p.arn() == *a),
        ),
    };
    found.ok_or_else(|| {
        invalid(format!(
            "Value ({value}) for parameter iamInstanceProfile.{field} is invalid. Invalid IAM Instance Profile {field}"
        ))
    })
}

/// The role ARNs a profile would pass to EC2 (for the iam:PassRole check).
pub fn profile_role_arns(st: &State, p: &InstanceProfile) -> Vec<String> {
    p.roles
        .iter()
        .filter_map(|r| st.role(&p.account, r))
        .map(|r| r.arn())
        .collect()
}

fn new_association(p: &InstanceProfile) -> ProfileAssociation {
    ProfileAssociation {
        id: hex_id("iip-assoc-"),
        profile_arn: p.arn(),
        profile_id: p.id.clone(),
        state: "associated".into(),
        timestamp: now(),
    }
}

pub(crate) fn decode_user_data(b64: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| invalid("Invalid BASE64 encoding of user data."))?;
    if data.len() > MAX_USER_DATA {
        return Err(invalid(format!(
            "User data is limited to {MAX_USER_DATA} bytes."
        )));
    }
    Ok(data)
}

/// Base64 user data as a request gives it: decodable and within limits.
pub fn validate_user_data(b64: &str) -> Result<()> {
    decode_user_data(b64).map(|_| ())
}

/// Decoded user data of an instance, if any.
pub fn user_data_bytes(i: &Instance) -> Option<Vec<u8>> {
    i.user_data
        .as_deref()
        .and_then(|u| decode_user_data(u).ok())
}

fn free_slots(st: &State, n: usize) -> Result<Vec<u32>> {
    let used: BTreeSet<u32> = st
        .instances
        .values()
        .filter(|i| !i.is_terminated())
        .map(|i| i.slot)
        .collect();
    let slots: Vec<u32> = (1..MAX_SLOTS)
        .filter(|s| !used.contains(s))
        .take(n)
        .collect();
    if slots.len() < n {
        return Err(ServiceError::InstanceLimitExceeded(format!(
            "You have requested more instances ({n}) than your current instance limit allows"
        )));
    }
    Ok(slots)
}

/// What new instances launch with beside themselves: their volumes,
/// with the request's volume tags, and their primary interfaces' tags.
fn launch_tagged(instances: &[Instance], input: &RunInput) -> Result<Vec<Change>> {
    let mut out = volume::launch_volumes(instances, &input.block_devices)?;
    if !input.volume_tags.is_empty() {
        for c in &mut out {
            if let Change::Put(Entity::Volume(v)) = c {
                v.tags = input.volume_tags.clone();
            }
        }
    }
    if !input.eni_tags.is_empty() {
        out.extend(instances.iter().filter_map(vpc::interface_of).map(|e| {
            Change::Put(Entity::ResourceTags(crate::tags::ResourceTags {
                id: e.id,
                account: e.account,
                region: e.region,
                tags: input.eni_tags.clone(),
            }))
        }));
    }
    Ok(out)
}

/// Private addresses of the live instances (all accounts: netns mode
/// gives each its address on the host) and of created network interfaces.
pub(crate) fn live_addresses(st: &State) -> BTreeSet<String> {
    st.instances
        .values()
        .filter(|i| !i.is_terminated())
        .filter_map(|i| i.private_ip.clone())
        .chain(crate::eni::interface_addresses(st).cloned())
        .collect()
}

/// In the default VPC's first subnet, the slot's address; else (or when
/// taken: a requested address may hold it) the subnet's first free one.
fn instance_address(
    slot: u32,
    subnet: &network::Subnet,
    used: &BTreeSet<String>,
) -> Result<String> {
    let first_default = vpc::DefaultNetwork::new(&subnet.account, &subnet.region)
        .instance_subnet()
        .is_some_and(|d| d.id == subnet.id);
    first_default
        .then(|| vpc::slot_address(slot))
        .flatten()
        .filter(|a| !used.contains(a))
        .or_else(|| network::free_address_in(&subnet.cidr, used))
        .ok_or_else(|| {
            ServiceError::InsufficientFreeAddressesInSubnet(
                "There are not enough free addresses in subnet to satisfy the requested number of instances.".into(),
            )
        })
}

fn ip_in_use(st: &State, ip: &str) -> bool {
    live_addresses(st).contains(ip)
}

impl Keycard {
    /// Instance-role credentials stop working when the instance stops or
    /// terminates, or when its profile association changes.
    pub fn check_instance_session(&self, s: &Session) -> Result<()> {
        let Some(claim) = &s.claims.instance else {
            return Ok(());
        };
        let st = self.state();
        let ok = st.instances.get(&claim.id).is_some_and(|i| {
            i.state == "running"
                && i.profile
                    .as_ref()
                    .is_some_and(|a| a.id == claim.association && a.state == "associated")
        });
        if ok {
            Ok(())
        } else {
            Err(ServiceError::ExpiredToken(
                "The security token included in the request is expired".into(),
            ))
        }
    }

    /// Validate a RunInstances request without launching anything; the
    /// profile it names (for the iam:PassRole check) comes back.
    pub fn check_run(&self, account: &str, region: &str, input: &RunInput) -> Result<Launch> {
        let st = self.state();
        validate_run(&st, account, region, input)
    }

    /// Launch instances. All-or-nothing: a bad field launches none.
    pub async fn run_instances(
        &self,
        account: &str,
        region: &str,
        input: RunInput,
    ) -> Result<(String, Vec<Instance>)> {
        self.mutate(|st| {
            if let Some(tok) = &input.client_token {
                let mut prior: Vec<Instance> = st
                    .instances
                    .values()
                    .filter(|i| i.account == account && i.client_token.as_deref() == Some(tok))
                    .map(|i| (**i).clone())
                    .collect();
                prior.sort_by_key(|i| i.launch_index);
                if let Some(reservation_id) = prior.first().map(|i| i.reservation_id.clone()) {
                    return Ok((Vec::new(), (reservation_id, prior)));
                }
            }
            let Launch {
                profile,
                placement,
                key,
                ..
            } = validate_run(st, account, region, &input)?;
            let node = self.launch_node(&input.tags)?;
            let net = placement.network();
            let count = input.max_count.min(MAX_RUN_COUNT) as usize;
            let slots = free_slots(st, count)?;
            if input.private_ip.is_some() && count > 1 {
                return Err(ServiceError::InvalidParameterCombination(
                    "Cannot specify a private IP address when launching more than one instance"
                        .into(),
                ));
            }
            let metadata = input.metadata.apply(&MetadataOptions::default())?;
            let reservation = hex_id("r-");
            let t = now();
            let mut out = Vec::with_capacity(count);
            let mut used = live_addresses(st);
            for (n, slot) in slots.into_iter().enumerate() {
                let ip = match &input.private_ip {
                    Some(ip) => ip.clone(),
                    None => instance_address(slot, &placement.subnet, &used)?,
                };
                used.insert(ip.clone());
                out.push(Instance {
                    id: hex_id("i-"),
                    account: account.to_string(),
                    state: "running".into(),
                    profile: profile.as_ref().map(new_association),
                    private_ip: Some(ip),
                    region: region.to_string(),
                    image_id: input.image_id.clone(),
                    instance_type: input
                        .instance_type
                        .clone()
                        .unwrap_or_else(|| "m1.small".into()),
                    key_name: input.key_name.clone(),
                    public_key: key.as_ref().map(|k| k.openssh_line()),
                    launch_time: t,
                    reservation_id: reservation.clone(),
                    launch_index: n as u32,
                    user_data: input.user_data.clone(),
                    tags: input.tags.clone(),
                    metadata: metadata.clone(),
                    slot,
                    client_token: input.client_token.clone(),
                    state_reason: None,
                    network: Some(net.clone()),
                    node: Some(node.clone()),
                    attrs: input.attrs.clone(),
                    imds: ImdsHealth::Unknown,
                });
            }
            let mut changes: Vec<Change> = out
                .iter()
                .map(|i| Change::Put(Entity::Instance(i.clone())))
                .collect();
            changes.extend(launch_tagged(&out, &input)?);
            Ok((changes, (reservation, out)))
        })
        .await
    }

    /// Instances of `account`, by id (all must exist) and filters, sorted
    /// by id; `after` continues a page.
    pub fn describe_instances(
        &self,
        account: &str,
        ids: &[String],
        filters: &[Filter],
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<Instance>, Option<String>)> {
        check_instance_filters(filters)?;
        let by_interface = filters
            .iter()
            .any(|f| f.name.starts_with("network-interface."));
        let st = self.state();
        let chosen: Vec<&Instance> = if ids.is_empty() {
            st.instances
                .values()
                .filter(|i| i.account == account)
                .map(|i| &**i)
                .collect()
        } else {
            let mut v = lookup(&st, account, ids)?;
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        let matched = chosen
            .into_iter()
            .filter(|i| after.is_none_or(|a| i.id.as_str() > a))
            .filter(|i| {
                let secondary = if by_interface {
                    crate::eni::attached_to(&st, &i.id).cloned().collect()
                } else {
                    Vec::new()
                };
                filters.iter().all(|f| instance_matches(i, &secondary, f))
            });
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut more = false;
        for i in matched {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(i.clone());
        }
        let next = more
            .then(|| out.last().map(|i| next_token(&i.id)))
            .flatten();
        Ok((out, next))
    }

    /// Start, stop or terminate instances; all ids are checked first.
    pub async fn change_state(
        &self,
        account: &str,
        ids: &[String],
        op: StateOp,
    ) -> Result<Vec<StateChange>> {
        if ids.is_empty() {
            return Err(ServiceError::MissingParameter(
                "The request must contain the parameter InstanceId".into(),
            ));
        }
        self.mutate(|st| {
            let found = lookup(st, account, ids)?;
            let mut changes = Vec::new();
            let mut out = Vec::new();
            for i in found {
                crate::instance_attrs::check_protection(i, op)?;
                if op == StateOp::Terminate && !i.is_terminated() {
                    changes.extend(volume::on_terminate(st, &i.id));
                    changes.extend(crate::eni::on_terminate(st, i));
                }
                let prev = i.state.clone();
                let (stored, shown, reason) = match (op, prev.as_str()) {
                    (StateOp::Terminate, "terminated") => ("terminated", "terminated", None),
                    (StateOp::Terminate, _) => (
                        "terminated",
                        "shutting-down",
                        Some("Client.UserInitiatedShutdown: User initiated shutdown"),
                    ),
                    (_, "terminated" | "shutting-down") => {
                        let what = if op == StateOp::Stop {
                            "stopped"
                        } else {
                            "started"
                        };
                        return Err(ServiceError::IncorrectInstanceState(format!(
                            "The instance '{}' is not in a state from which it can be {what}.",
                            i.id
                        )));
                    }
                    (StateOp::Stop, "stopped") => ("stopped", "stopped", None),
                    (StateOp::Stop, _) => (
                        "stopped",
                        "stopping",
                        Some("Client.UserInitiatedShutdown: User initiated shutdown"),
                    ),
                    (StateOp::Start, "running") => ("running", "running", None),
                    (StateOp::Start, _) => ("running", "pending", None),
                };
                if stored != prev {
                    let mut n = i.clone();
                    n.state = stored.to_string();
                    n.state_reason = reason.map(str::to_string);
                    if stored == "terminated" {
                        // A terminated instance keeps no association.
                        n.profile = None;
                    }
                    changes.push(Change::Put(Entity::Instance(n)));
                }
                out.push(StateChange {
                    id: i.id.clone(),
                    previous: prev,
                    current: shown.to_string(),
                });
            }
            Ok((changes, out))
        })
        .await
    }

    /// The profile an AssociateIamInstanceProfile call names, checked
    /// (for the iam:PassRole check before the write).
    pub fn find_profile(&self, account: &str, r: &ProfileRef) -> Result<InstanceProfile> {
        let st = self.state();
        resolve_profile(&st, account, r).cloned()
    }

    /// Associate a profile with an instance that has none.
    pub async fn associate_profile(
        &self,
        account: &str,
        instance_id: &str,
        r: &ProfileRef,
    ) -> Result<ProfileAssociation> {
        self.mutate(|st| {
            let p = resolve_profile(st, account, r)?;
            let i = lookup_one(st, account, instance_id)?;
            if !matches!(
                i.state.as_str(),
                "running" | "stopped" | "pending" | "stopping"
            ) {
                return Err(ServiceError::IncorrectInstanceState(format!(
                    "The instance '{}' is not in the 'running' or 'stopped' states.",
                    i.id
                )));
            }
            if i.profile.is_some() {
                return Err(ServiceError::IncorrectState(format!(
                    "There is an existing association for instance {}",
                    i.id
                )));
            }
            let a = new_association(p);
            let mut n = i.clone();
            n.profile = Some(a.clone());
            Ok((vec![Change::Put(Entity::Instance(n))], a))
        })
        .await
    }

    /// Find the instance an association id belongs to.
    pub fn association_instance(&self, account: &str, association_id: &str) -> Result<Instance> {
        let st = self.state();
        find_association(&st, account, association_id).map(|(i, _)| i.clone())
    }

    /// Remove an association; its instance's credentials stop working.
    pub async fn disassociate_profile(
        &self,
        account: &str,
        association_id: &str,
    ) -> Result<(String, ProfileAssociation)> {
        self.mutate(|st| {
            let (i, a) = find_association(st, account, association_id)?;
            let mut a = a.clone();
            a.state = "disassociating".into();
            let mut n = i.clone();
            n.profile = None;
            Ok((vec![Change::Put(Entity::Instance(n))], (i.id.clone(), a)))
        })
        .await
    }

    /// Swap the profile of an instance in place (no stop needed).
    pub async fn replace_profile(
        &self,
        account: &str,
        association_id: &str,
        r: &ProfileRef,
    ) -> Result<(String, ProfileAssociation)> {
        self.mutate(|st| {
            let p = resolve_profile(st, account, r)?;
            let (i, _) = find_association(st, account, association_id)?;
            let a = new_association(p);
            let mut n = i.clone();
            n.profile = Some(a.clone());
            Ok((vec![Change::Put(Entity::Instance(n))], (i.id.clone(), a)))
        })
        .await
    }

    /// Associations of `account`, filtered by instance id and state.
    pub fn describe_associations(
        &self,
        account: &str,
        association_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<(String, ProfileAssociation)>> {
        check_filters(filters, &["instance-id", "state"])?;
        let st = self.state();
        for id in association_ids {
            find_association(&st, account, id)?;
        }
        let mut out: Vec<(String, ProfileAssociation)> = st
            .instances
            .values()
            .filter(|i| i.account == account)
            .filter_map(|i| i.profile.as_ref().map(|a| (i.id.clone(), a.clone())))
            .filter(|(_, a)| association_ids.is_empty() || association_ids.contains(&a.id))
            .filter(|(iid, a)| {
                filters.iter().all(|f| {
                    let v = if f.name == "instance-id" {
                        iid
                    } else {
                        &a.state
                    };
                    f.values.iter().any(|p| wildcard(p, v))
                })
            })
            .collect();
        out.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        Ok(out)
    }

    /// ModifyInstanceMetadataOptions: validated as a whole, then applied.
    pub async fn modify_metadata_options(
        &self,
        account: &str,
        instance_id: &str,
        input: &MetadataOptionsInput,
    ) -> Result<MetadataOptions> {
        if input.is_empty() {
            return Err(ServiceError::InvalidParameterCombination(
                "At least one of HttpTokens, HttpEndpoint, HttpPutResponseHopLimit or InstanceMetadataTags must be given".into(),
            ));
        }
        self.mutate(|st| {
            let i = lookup_one(st, account, instance_id)?;
            if i.is_terminated() {
                return Err(ServiceError::IncorrectInstanceState(format!(
                    "The instance '{}' is not in a valid state for this operation.",
                    i.id
                )));
            }
            let m = input.apply(&i.metadata)?;
            let mut n = i.clone();
            n.metadata = m.clone();
            Ok((vec![Change::Put(Entity::Instance(n))], m))
        })
        .await
    }

    /// One instance, by id, in `account`.
    pub fn instance(&self, account: &str, id: &str) -> Result<Instance> {
        let st = self.state();
        lookup_one(&st, account, id).cloned()
    }
}

/// The instance holding association `id`, and the association.
fn find_association<'a>(
    st: &'a State,
    account: &str,
    id: &str,
) -> Result<(&'a Instance, &'a ProfileAssociation)> {
    st.instances
        .values()
        .filter(|i| i.account == account)
        .find_map(|i| i.profile.as_ref().filter(|a| a.id == id).map(|a| (&**i, a)))
        .ok_or_else(|| {
            ServiceError::InvalidAssociationIdNotFound(format!(
                "The association {id} does not exist"
            ))
        })
}

/// What a valid RunInstances request launches with: its profile and
/// where its instances go.
#[derive(Debug, Clone)]
pub struct Launch {
    pub profile: Option<InstanceProfile>,
    pub placement: Placement,
    /// The image and key pair it names (both must exist).
    pub image: crate::image::Image,
    pub key: Option<crate::keypair::KeyPair>,
}

fn validate_run(st: &State, account: &str, region: &str, input: &RunInput) -> Result<Launch> {
    if input.image_id.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter ImageId".into(),
        ));
    }
    let image = crate::image::resolve(st, account, region, &input.image_id)?;
    if let Some(t) = &input.instance_type
        && !valid_instance_type(t)
    {
        return Err(invalid(format!("Invalid value '{t}' for InstanceType.")));
    }
    if input.min_count < 1 || input.max_count < 1 {
        return Err(invalid(
            "Value for parameter MinCount and MaxCount must be at least 1",
        ));
    }
    if input.min_count > input.max_count {
        return Err(invalid(format!(
            "Value ({}) for parameter minCount is invalid. Expecting a value less than or equal to maxCount ({}).",
            input.min_count, input.max_count
        )));
    }
    if input.min_count > MAX_RUN_COUNT {
        return Err(ServiceError::InstanceLimitExceeded(format!(
            "You have requested more instances ({}) than your current instance limit of {MAX_RUN_COUNT} allows",
            input.min_count
        )));
    }
    if let Some(k) = &input.key_name
        && (k.is_empty() || k.len() > 255)
    {
        return Err(invalid(format!("Invalid value '{k}' for KeyName")));
    }
    if let Some(u) = &input.user_data {
        decode_user_data(u)?;
    }
    crate::instance_attrs::check_shutdown_behavior(&input.attrs.shutdown_behavior)?;
    volume::check_mappings(&input.block_devices)?;
    validate_tags(&input.tags)?;
    validate_tags(&input.volume_tags)?;
    validate_tags(&input.eni_tags)?;
    input.metadata.apply(&MetadataOptions::default())?;
    let placement = network::place(st, account, region, &input.network)?;
    if let Some(ip) = &input.private_ip {
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| invalid(format!("Invalid value '{ip}' for PrivateIpAddress")))?;
        if addr.is_loopback() || addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast()
        {
            return Err(invalid(format!(
                "Address {ip} is not valid for PrivateIpAddress"
            )));
        }
        if input.max_count > 1 {
            return Err(ServiceError::InvalidParameterCombination(
                "Cannot specify a private IP address when launching more than one instance".into(),
            ));
        }
        network::check_requested_address(ip, &placement.subnet.cidr)?;
        if ip_in_use(st, ip) {
            return Err(ServiceError::InvalidIpAddressInUse(format!(
                "Address {ip} is in use."
            )));
        }
    }
    if let Some(t) = &input.client_token
        && (t.is_empty() || t.len() > 64)
    {
        return Err(invalid("ClientToken must be 1 to 64 characters"));
    }
    let profile = input
        .profile
        .as_ref()
        .map(|r| resolve_profile(st, account, r).cloned())
        .transpose()?;
    let key = launch_key(st, account, region, input.key_name.as_deref())?;
    Ok(Launch {
        profile,
        placement,
        image,
        key,
    })
}

/// The key pair a RunInstances KeyName names: it must exist.
fn launch_key(
    st: &State,
    account: &str,
    region: &str,
    name: Option<&str>,
) -> Result<Option<crate::keypair::KeyPair>> {
    name.map(|n| crate::keypair::resolve(st, account, region, n).cloned())
        .transpose()
}

impl Keycard {
    /// Record how an instance's metadata listener is doing (memory only;
    /// wakes no watcher, so the IMDS reconciler does not loop on it). A
    /// failure keeps the time it first happened.
    pub fn record_imds(&self, id: &str, health: ImdsHealth) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        let health = match (&inst.imds, health) {
            (ImdsHealth::Failed { since, .. }, ImdsHealth::Failed { reason, .. }) => {
                ImdsHealth::Failed {
                    since: *since,
                    reason,
                }
            }
            (_, h) => h,
        };
        if inst.imds != health {
            std::sync::Arc::make_mut(inst).imds = health;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::valid_image_id;

    #[test]
    fn ids() {
        assert!(valid_instance_id("i-0123456789abcdef0"));
        assert!(valid_instance_id("i-12345678"));
        assert!(!valid_instance_id("i-xyz"));
        assert!(!valid_instance_id("0123456789abcdef0"));
        assert!(valid_image_id("ami-0abcdef1234567890"));
        assert!(!valid_image_id("ami-XYZ"));
        assert!(valid_instance_type("t3.micro"));
        assert!(valid_instance_type("u-6tb1.metal"));
        assert!(!valid_instance_type("micro"));
        assert!(!valid_instance_type("T3.micro"));
        let id = hex_id("i-");
        assert!(valid_instance_id(&id), "{id}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("web-*", "web-1"));
        assert!(wildcard("w?b", "web"));
        assert!(!wildcard("web", "web-1"));
        assert!(wildcard("*-1", "web-1"));
        assert!(!wildcard("a*b", "acd"));
    }

    #[test]
    fn metadata_options_validate() {
        let base = MetadataOptions::default();
        let ok = MetadataOptionsInput {
            http_tokens: Some("required".into()),
            hop_limit: Some("64".into()),
            ..Default::default()
        };
        let m = ok.apply(&base).unwrap();
        assert_eq!(m.http_tokens, "required");
        assert_eq!(m.hop_limit, 64);
        for bad in [
            MetadataOptionsInput {
                http_tokens: Some("yes".into()),
                ..Default::default()
            },
            MetadataOptionsInput {
                hop_limit: Some("65".into()),
                ..Default::default()
            },
            MetadataOptionsInput {
                hop_limit: Some("0".into()),
                ..Default::default()
            },
            MetadataOptionsInput {
                http_endpoint: Some("off".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(&base).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slots_give_distinct_addresses() {
        let mut seen = BTreeSet::new();
        for s in 1..MAX_SLOTS {
            let (a, b) = slot_octets(s);
            assert!(b != 0 && b != 255);
            assert!(seen.insert((a, b)));
        }
    }

    #[test]
    fn tokens_roundtrip() {
        assert_eq!(parse_next_token(&next_token("i-abc")).unwrap(), "i-abc");
        assert!(parse_next_token("garbage!").is_err());
    }
}
