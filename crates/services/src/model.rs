//! The entities keycard keeps, as stored (JSON) and as held in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use keycard_policy::{Policy, PolicyKind};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Seconds since the Unix epoch; rendered as ISO 8601 at the edge.
pub type Epoch = i64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A policy document: the text the client gave (returned verbatim, as IAM
/// does) and its compiled form, rebuilt after loading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDoc {
    pub text: String,
    #[serde(skip)]
    pub compiled: Option<Arc<Policy>>,
}

impl PolicyDoc {
    /// Parse and validate `text` as a policy of `kind`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDoc> {
        let p = Policy::parse(text, kind)?;
        Ok(PolicyDoc {
            text: text.to_string(),
            compiled: Some(Arc::new(p)),
        })
    }

    /// Compile after loading from the store. A document that no longer
    /// parses keeps `compiled = None` and so grants nothing.
    pub fn recompile(&mut self, kind: PolicyKind) {
        if self.compiled.is_none() {
            self.compiled = Policy::parse(&self.text, kind)
                .or_else(|_| Policy::parse_unchecked_size(&self.text, kind))
                .ok()
                .map(Arc::new);
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub created: Epoch,
    pub root_key_id: String,
    #[serde(default)]
    pub alias: Option<String>,
    /// Password policy, virtual MFA devices, credential report.
    #[serde(default)]
    pub governance: crate::iam_governance::AccountGovernance,
    /// Server certificates, service-linked role deletions, STS settings.
    #[serde(
        default,
        skip_serializing_if = "crate::iam_creds::AccountExtras::is_empty"
    )]
    pub extras: crate::iam_creds::AccountExtras,
    /// OIDC providers and outbound federation (federation.rs).
    #[serde(default)]
    pub federation: crate::federation::AccountFederation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub account: String,
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Epoch,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub boundary: Option<String>,
    #[serde(default)]
    pub inline: BTreeMap<String, PolicyDoc>,
    #[serde(default)]
    pub attached: Vec<String>,
    /// Names of the groups the user belongs to (as the groups spell them).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The console password (CreateLoginProfile), hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_profile: Option<crate::iam_governance::LoginProfile>,
    /// SSH public keys, signing certificates, service-specific credentials.
    #[serde(
        default,
        skip_serializing_if = "crate::iam_creds::UserCredentials::is_empty"
    )]
    pub creds: crate::iam_creds::UserCredentials,
}

impl User {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:user{}{}",
            self.account, self.path, self.name
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub account: String,
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Epoch,
    #[serde(default)]
    pub inline: BTreeMap<String, PolicyDoc>,
    #[serde(default)]
    pub attached: Vec<String>,
}

impl Group {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:group{}{}",
            self.account, self.path, self.name
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub account: String,
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Epoch,
    pub trust: PolicyDoc,
    #[serde(default)]
    pub description: Option<String>,
    pub max_session_duration: u32,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub boundary: Option<String>,
    #[serde(default)]
    pub inline: BTreeMap<String, PolicyDoc>,
    #[serde(default)]
    pub attached: Vec<String>,
    #[serde(default)]
    pub last_used: Option<Epoch>,
    /// The region of the last call made with one of the role's sessions.
    #[serde(default)]
    pub last_used_region: Option<String>,
}

impl Role {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:role{}{}",
            self.account, self.path, self.name
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub id: String,
    pub doc: PolicyDoc,
    pub created: Epoch,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedPolicy {
    /// Owning account, or `"aws"` for AWS managed policies.
    pub account: String,
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Epoch,
    pub updated: Epoch,
    #[serde(default)]
    pub description: Option<String>,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    pub next_version: u32,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:policy{}{}",
            self.account, self.path, self.name
        )
    }
    pub fn default_doc(&self) -> Option<&PolicyDoc> {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .map(|v| &v.doc)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceProfile {
    pub account: String,
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Epoch,
    /// Role names (at most one).
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl InstanceProfile {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:instance-profile{}{}",
            self.account, self.path, self.name
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastUsed {
    pub date: Epoch,
    pub service: String,
    pub region: String,
}

/// A long-term access key. The secret is stored sealed under the data
/// directory's master key; the clear secret only lives in memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    pub account: String,
    /// `None` for the account's root key.
    pub user: Option<String>,
    pub id: String,
    pub sealed_secret: String,
    pub status: KeyStatus,
    pub created: Epoch,
    #[serde(default)]
    pub last_used: Option<LastUsed>,
}

/// A deleted access key, remembered (without its secret) so a key id found
/// in code or user data can still be attributed. AWS forgets deleted keys;
/// keycard goes further for `keycard scan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedAccessKey {
    pub account: String,
    /// `None` for an account's root key.
    pub user: Option<String>,
    pub id: String,
    pub created: Epoch,
    pub deleted: Epoch,
    #[serde(default)]
    pub last_used: Option<LastUsed>,
}

impl DeletedAccessKey {
    /// The record of `k` deleted at `deleted`.
    pub fn of(k: &AccessKey, deleted: Epoch) -> Self {
        DeletedAccessKey {
            account: k.account.clone(),
            user: k.user.clone(),
            id: k.id.clone(),
            created: k.created,
            deleted,
            last_used: k.last_used.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    pub account: String,
    pub created: Epoch,
    pub region: String,
    #[serde(default)]
    pub policy: Option<PolicyDoc>,
    /// Bucket tags (`aws:ResourceTag/…` on bucket checks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// CORS, encryption, Block Public Access, ownership, ACL, … .
    #[serde(
        default,
        skip_serializing_if = "crate::s3_settings::BucketSettings::is_empty"
    )]
    pub settings: crate::s3_settings::BucketSettings,
    /// `Enabled` or `Suspended`; `None` until versioning is first set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// The lifecycle rules (PutBucketLifecycleConfiguration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<crate::s3_lifecycle::Rule>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    /// Milliseconds since the epoch.
    pub last_modified_ms: i64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Other stored headers (content-encoding, cache-control, …).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// File name of the data under the objects directory.
    pub file: String,
    #[serde(default)]
    pub parts_count: Option<u32>,
    /// Object tags (`s3:ExistingObjectTag/…` on object checks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// ACL grants besides the owner's FULL_CONTROL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<crate::s3_settings::Grant>,
    /// The version id; `None` is the `null` version (unversioned and
    /// suspended buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A delete marker: no data (`file` empty), hides older versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    /// Creation order among the key's versions (nanoseconds, strictly
    /// increasing per key).
    #[serde(default)]
    pub seq: i64,
}

impl ObjectMeta {
    /// The version id as S3 writes it (`null` for the null version).
    pub fn version(&self) -> &str {
        self.version_id.as_deref().unwrap_or("null")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartMeta {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    pub file: String,
    pub last_modified_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub content_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub parts: BTreeMap<u32, PartMeta>,
    pub owner_account: String,
    /// Tags the completed object gets (`x-amz-tagging` at creation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Anything the store holds, for uniform write-through.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "entities are short-lived and moved once; boxing buys nothing"
)]
pub enum Entity {
    Account(Account),
    User(User),
    Group(Group),
    Role(Role),
    Policy(ManagedPolicy),
    InstanceProfile(InstanceProfile),
    AccessKey(AccessKey),
    DeletedAccessKey(DeletedAccessKey),
    Bucket(Bucket),
    Object(ObjectMeta),
    /// A noncurrent version or a delete marker (the current live version
    /// is an `Object`).
    ObjectVersion(ObjectMeta),
    Upload(Upload),
    Instance(crate::ec2::Instance),
    Vpc(crate::network::Vpc),
    Subnet(crate::network::Subnet),
    SecurityGroup(crate::network::SecurityGroup),
    KeyPair(crate::keypair::KeyPair),
    Image(crate::image::Image),
    LaunchTemplate(crate::template::LaunchTemplate),
    Volume(crate::volume::Volume),
    NetworkInterface(crate::vpc::NetworkInterface),
    ResourceTags(crate::tags::ResourceTags),
}

/// The store key of a noncurrent version: `bucket/version/key` (neither
/// bucket names nor version ids contain `/`).
pub fn version_key(o: &ObjectMeta) -> String {
    format!("{}/{}/{}", o.bucket, o.version(), o.key)
}

/// Case-insensitive IAM names: uniqueness ignores case, display keeps it.
pub fn name_key(account: &str, name: &str) -> String {
    format!("{account}/{}", name.to_ascii_lowercase())
}

impl Entity {
    /// The record kind and key this entity is stored under.
    pub fn kind_key(&self) -> (&'static str, String) {
        match self {
            Entity::Account(a) => ("account", a.id.clone()),
            Entity::User(u) => ("user", name_key(&u.account, &u.name)),
            Entity::Group(g) => ("group", name_key(&g.account, &g.name)),
            Entity::Role(r) => ("role", name_key(&r.account, &r.name)),
            Entity::Policy(p) => ("policy", p.arn()),
            Entity::InstanceProfile(p) => ("instance_profile", name_key(&p.account, &p.name)),
            Entity::AccessKey(k) => ("access_key", k.id.clone()),
            Entity::DeletedAccessKey(k) => ("deleted_access_key", k.id.clone()),
            Entity::Bucket(b) => ("bucket", b.name.clone()),
            Entity::Object(o) => ("object", format!("{}/{}", o.bucket, o.key)),
            Entity::ObjectVersion(o) => ("object_version", version_key(o)),
            Entity::Upload(u) => ("upload", u.id.clone()),
            Entity::Instance(i) => ("instance", i.id.clone()),
            Entity::Vpc(v) => ("vpc", v.id.clone()),
            Entity::Subnet(x) => ("subnet", x.id.clone()),
            Entity::SecurityGroup(g) => ("security_group", g.id.clone()),
            Entity::KeyPair(k) => ("key_pair", k.id.clone()),
            Entity::Image(i) => ("image", i.id.clone()),
            Entity::LaunchTemplate(t) => ("launch_template", t.id.clone()),
            Entity::Volume(v) => ("volume", v.id.clone()),
            Entity::NetworkInterface(e) => ("network_interface", e.id.clone()),
            Entity::ResourceTags(t) => ("resource_tags", t.id.clone()),
        }
    }

    pub fn to_json(&self) -> String {
        let r = match self {
            Entity::Account(x) => serde_json::to_string(x),
            Entity::User(x) => serde_json::to_string(x),
            Entity::Group(x) => serde_json::to_string(x),
            Entity::Role(x) => serde_json::to_string(x),
            Entity::Policy(x) => serde_json::to_string(x),
            Entity::InstanceProfile(x) => serde_json::to_string(x),
            Entity::AccessKey(x) => serde_json::to_string(x),
            Entity::DeletedAccessKey(x) => serde_json::to_string(x),
            Entity::Bucket(x) => serde_json::to_string(x),
            Entity::Object(x) | Entity::ObjectVersion(x) => serde_json::to_string(x),
            Entity::Upload(x) => serde_json::to_string(x),
            Entity::Instance(x) => serde_json::to_string(x),
            Entity::Vpc(x) => serde_json::to_string(x),
            Entity::Subnet(x) => serde_json::to_string(x),
            Entity::SecurityGroup(x) => serde_json::to_string(x),
            Entity::KeyPair(x) => serde_json::to_string(x),
            Entity::Image(x) => serde_json::to_string(x),
            Entity::LaunchTemplate(x) => serde_json::to_string(x),
            Entity::Volume(x) => serde_json::to_string(x),
            Entity::NetworkInterface(x) => serde_json::to_string(x),
            Entity::ResourceTags(x) => serde_json::to_string(x),
        };
        // Serializing plain structs of strings and numbers cannot fail.
        r.unwrap_or_default()
    }

    pub fn from_record(kind: &str, json: &str) -> std::result::Result<Entity, String> {
        fn de<T: serde::de::DeserializeOwned>(s: &str) -> std::result::Result<T, String> {
            serde_json::from_str(s).map_err(|e| e.to_string())
        }
        Ok(match kind {
            "account" => Entity::Account(de(json)?),
            "user" => Entity::User(de(json)?),
            "group" => Entity::Group(de(json)?),
            "role" => Entity::Role(de(json)?),
            "policy" => Entity::Policy(de(json)?),
            "instance_profile" => Entity::InstanceProfile(de(json)?),
            "access_key" => Entity::AccessKey(de(json)?),
            "deleted_access_key" => Entity::DeletedAccessKey(de(json)?),
            "bucket" => Entity::Bucket(de(json)?),
            "object" => Entity::Object(de(json)?),
            "object_version" => Entity::ObjectVersion(de(json)?),
            "upload" => Entity::Upload(de(json)?),
            "instance" => Entity::Instance(de(json)?),
            "vpc" => Entity::Vpc(de(json)?),
            "subnet" => Entity::Subnet(de(json)?),
            "security_group" => Entity::SecurityGroup(de(json)?),
            "key_pair" => Entity::KeyPair(de(json)?),
            "image" => Entity::Image(de(json)?),
            "launch_template" => Entity::LaunchTemplate(de(json)?),
            "volume" => Entity::Volume(de(json)?),
            "network_interface" => Entity::NetworkInterface(de(json)?),
            "resource_tags" => Entity::ResourceTags(de(json)?),
            other => return Err(format!("unknown record kind {other}")),
        })
    }
}

/// A change to apply: write-through to the store, then to memory.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "changes are short-lived and moved once; boxing buys nothing"
)]
pub enum Change {
    Put(Entity),
    Delete(&'static str, String),
}

/// How a managed policy is used: the counts GetPolicy and ListPolicies
/// report as `AttachmentCount` and `PermissionsBoundaryUsageCount`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyUsage {
    /// Users, groups and roles the policy is attached to.
    pub attachments: usize,
    /// Users and roles using the policy as their permissions boundary.
    pub boundaries: usize,
}
