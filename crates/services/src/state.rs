//! The in-memory read model: every entity, indexed for the lookups the hot
//! path needs. Built from the store at start, changed only by `apply`
//! after the store has committed the same change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keycard_policy::PolicyKind;
use keycard_proto::secret::SecretKey;

use crate::ec2::Instance;
use crate::model::*;
use crate::network::{SecurityGroup, Subnet, Vpc};

#[derive(Default)]
pub struct State {
    pub accounts: BTreeMap<String, Account>,
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub roles: BTreeMap<String, Role>,
    /// By ARN.
    pub policies: BTreeMap<String, ManagedPolicy>,
    pub instance_profiles: BTreeMap<String, InstanceProfile>,
    pub access_keys: BTreeMap<String, AccessKey>,
    /// Deleted access keys, by key id (for attributing leaked ids).
    pub deleted_access_keys: BTreeMap<String, DeletedAccessKey>,
    /// Clear secrets of long-term keys, by key id.
    pub secrets: HashMap<String, SecretKey>,
    /// Shared: the request path takes a bucket without copying it.
    pub buckets: BTreeMap<String, Arc<Bucket>>,
    /// Bucket -> key -> object.
    pub objects: HashMap<String, BTreeMap<String, ObjectMeta>>,
    /// Bucket -> key -> noncurrent versions and delete markers, newest
    /// first (the current live version is in `objects`).
    pub versions: HashMap<String, BTreeMap<String, Vec<ObjectMeta>>>,
    pub uploads: BTreeMap<String, Upload>,
    pub instances: BTreeMap<String, std::sync::Arc<Instance>>,
    /// Created VPCs, subnets and security groups by id (the default
    /// network is derived, never stored: network.rs).
    pub vpcs: BTreeMap<String, Vpc>,
    pub subnets: BTreeMap<String, Subnet>,
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// Key pairs, registered images and launch templates by id.
    pub key_pairs: BTreeMap<String, crate::keypair::KeyPair>,
    pub images: BTreeMap<String, crate::image::Image>,
    pub launch_templates: BTreeMap<String, crate::template::LaunchTemplate>,
    /// EBS volumes by id (volume.rs).
    pub volumes: BTreeMap<String, crate::volume::Volume>,
    /// Created network interfaces by id (eni.rs); primary ones are
    /// derived from their instances (vpc.rs).
    pub network_interfaces: BTreeMap<String, crate::vpc::NetworkInterface>,
    /// Tags of derived resources by resource id (tags.rs).
    pub resource_tags: BTreeMap<String, crate::tags::ResourceTags>,
}

fn compile_inline(m: &mut BTreeMap<String, PolicyDoc>) {
    for d in m.values_mut() {
        d.recompile(PolicyKind::Identity);
    }
}

impl State {
    /// Put an entity into memory (after the store has it).
    pub fn put(&mut self, e: Entity) {
        let (_, key) = e.kind_key();
        match e {
            Entity::Account(a) => {
                self.accounts.insert(key, a);
            }
            Entity::User(mut u) => {
                compile_inline(&mut u.inline);
                self.users.insert(key, u);
            }
            Entity::Group(mut g) => {
                compile_inline(&mut g.inline);
                self.groups.insert(key, g);
            }
            Entity::Role(mut r) => {
                compile_inline(&mut r.inline);
                r.trust.recompile(PolicyKind::Trust);
                self.roles.insert(key, r);
            }
            Entity::Policy(mut p) => {
                for v in &mut p.versions {
                    v.doc.recompile(PolicyKind::Identity);
                }
                self.policies.insert(key, p);
            }
            Entity::InstanceProfile(p) => {
                self.instance_profiles.insert(key, p);
            }
            Entity::AccessKey(k) => {
                self.access_keys.insert(key, k);
            }
            Entity::DeletedAccessKey(k) => {
                self.deleted_access_keys.insert(key, k);
            }
            Entity::Bucket(mut b) => {
                if let Some(p) = &mut b.policy {
                    p.recompile(PolicyKind::Resource);
                }
                self.objects.entry(b.name.clone()).or_default();
                self.buckets.insert(key, Arc::new(b));
            }
            Entity::Object(o) => {
                self.objects
                    .entry(o.bucket.clone())
                    .or_default()
                    .insert(o.key.clone(), o);
            }
            Entity::ObjectVersion(o) => {
                let list = self
                    .versions
                    .entry(o.bucket.clone())
                    .or_default()
                    .entry(o.key.clone())
                    .or_default();
                list.retain(|v| v.version_id != o.version_id);
                let at = list.partition_point(|v| v.seq > o.seq);
                list.insert(at, o);
            }
            Entity::Upload(u) => {
                self.uploads.insert(key, u);
            }
            Entity::Instance(i) => {
                self.instances.insert(key, std::sync::Arc::new(i));
            }
            Entity::Vpc(v) => {
                self.vpcs.insert(key, v);
            }
            Entity::Subnet(x) => {
                self.subnets.insert(key, x);
            }
            Entity::SecurityGroup(g) => {
                self.security_groups.insert(key, g);
            }
            Entity::KeyPair(k) => {
                self.key_pairs.insert(key, k);
            }
            Entity::Image(i) => {
                self.images.insert(key, i);
            }
            Entity::LaunchTemplate(t) => {
                self.launch_templates.insert(key, t);
            }
            Entity::Volume(v) => {
                self.volumes.insert(key, v);
            }
            Entity::NetworkInterface(e) => {
                self.network_interfaces.insert(key, e);
            }
            Entity::ResourceTags(t) => {
                self.resource_tags.insert(key, t);
            }
        }
    }

    pub fn delete(&mut self, kind: &str, key: &str) {
        match kind {
            "account" => {
                self.accounts.remove(key);
            }
            "user" => {
                self.users.remove(key);
            }
            "group" => {
                self.groups.remove(key);
            }
            "role" => {
                self.roles.remove(key);
            }
            "policy" => {
                self.policies.remove(key);
            }
            "instance_profile" => {
                self.instance_profiles.remove(key);
            }
            "access_key" => {
                self.access_keys.remove(key);
                self.secrets.remove(key);
            }
            "deleted_access_key" => {
                self.deleted_access_keys.remove(key);
            }
            "bucket" => {
                self.buckets.remove(key);
                self.objects.remove(key);
                self.versions.remove(key);
            }
            "object_version" => self.delete_version(key),
            "object" => {
                if let Some((b, k)) = key.split_once('/')
                    && let Some(m) = self.objects.get_mut(b)
                {
                    m.remove(k);
                }
            }
            "upload" => {
                self.uploads.remove(key);
            }
            "instance" => {
                self.instances.remove(key);
            }
            "vpc" => {
                self.vpcs.remove(key);
            }
            "subnet" => {
                self.subnets.remove(key);
            }
            "security_group" => {
                self.security_groups.remove(key);
            }
            "key_pair" => {
                self.key_pairs.remove(key);
            }
            "image" => {
                self.images.remove(key);
            }
            "launch_template" => {
                self.launch_templates.remove(key);
            }
            "volume" => {
                self.volumes.remove(key);
            }
            "network_interface" => {
                self.network_interfaces.remove(key);
            }
            "resource_tags" => {
                self.resource_tags.remove(key);
            }
            _ => {}
        }
    }

    /// Forget every entity of a kind (another node's reset).
    pub fn delete_kind(&mut self, kind: &str) {
        match kind {
            "account" => self.accounts.clear(),
            "user" => self.users.clear(),
            "group" => self.groups.clear(),
            "role" => self.roles.clear(),
            "policy" => self.policies.clear(),
            "instance_profile" => self.instance_profiles.clear(),
            "access_key" => {
                self.access_keys.clear();
                self.secrets.clear();
            }
            "deleted_access_key" => self.deleted_access_keys.clear(),
            "bucket" => {
                self.buckets.clear();
                self.objects.clear();
                self.versions.clear();
            }
            "object" => self.objects.clear(),
            "object_version" => self.versions.clear(),
            "upload" => self.uploads.clear(),
            "instance" => self.instances.clear(),
            "vpc" => self.vpcs.clear(),
            "subnet" => self.subnets.clear(),
            "security_group" => self.security_groups.clear(),
            "key_pair" => self.key_pairs.clear(),
            "image" => self.images.clear(),
            "launch_template" => self.launch_templates.clear(),
            "volume" => self.volumes.clear(),
            "network_interface" => self.network_interfaces.clear(),
            "resource_tags" => self.resource_tags.clear(),
            _ => {}
        }
    }

    /// Forget a noncurrent version by its store key (`bucket/version/key`).
    fn delete_version(&mut self, key: &str) {
        let Some((bucket, rest)) = key.split_once('/') else {
            return;
        };
        let Some((version, k)) = rest.split_once('/') else {
            return;
        };
        let Some(keys) = self.versions.get_mut(bucket) else {
            return;
        };
        if let Some(list) = keys.get_mut(k) {
            list.retain(|v| v.version() != version);
            if list.is_empty() {
                keys.remove(k);
            }
        }
    }

    pub fn user(&self, account: &str, name: &str) -> Option<&User> {
        self.users.get(&name_key(account, name))
    }
    pub fn group(&self, account: &str, name: &str) -> Option<&Group> {
        self.groups.get(&name_key(account, name))
    }
    pub fn role(&self, account: &str, name: &str) -> Option<&Role> {
        self.roles.get(&name_key(account, name))
    }
    pub fn instance_profile(&self, account: &str, name: &str) -> Option<&InstanceProfile> {
        self.instance_profiles.get(&name_key(account, name))
    }

    /// How many users, groups and roles have the policy attached.
    pub fn attachment_count(&self, arn: &str) -> usize {
        let a = |v: &Vec<String>| v.iter().any(|x| x == arn) as usize;
        self.users.values().map(|u| a(&u.attached)).sum::<usize>()
            + self.groups.values().map(|g| a(&g.attached)).sum::<usize>()
            + self.roles.values().map(|r| a(&r.attached)).sum::<usize>()
    }

    /// Both counts of a policy's use, as GetPolicy reports them.
    pub fn policy_usage(&self, arn: &str) -> crate::model::PolicyUsage {
        crate::model::PolicyUsage {
            attachments: self.attachment_count(arn),
            boundaries: self.boundary_count(arn),
        }
    }

    /// How many users and roles use the policy as permissions boundary.
    pub fn boundary_count(&self, arn: &str) -> usize {
        self.users
            .values()
            .filter(|u| u.boundary.as_deref() == Some(arn))
            .count()
            + self
                .roles
                .values()
                .filter(|r| r.boundary.as_deref() == Some(arn))
                .count()
    }
}
