//! EC2 tags across every resource kind keycard has, for CreateTags,
//! DeleteTags and DescribeTags. A table of kinds by id prefix says how
//! to find a resource and where its tags live; a kind added later (launch
//! templates, key pairs, images) is one more row. Resources keycard
//! derives instead of storing (the default VPC, its subnets and group,
//! instances' primary interfaces) keep their tags in a [`ResourceTags`]
//! record beside them.

use serde::{Deserialize, Serialize};

use crate::ec2::validate_tags;
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::state::State;
use crate::volume::{ec2_error, find_volume};
use crate::{Keycard, network, vpc};

/// Tags of a derived resource, by its id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceTags {
    pub id: String,
    pub account: String,
    pub region: String,
    pub tags: Vec<Tag>,
}

/// A resource CreateTags found: what DescribeTags and the policy check
/// see of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub id: String,
    /// DescribeTags' `resourceType`: `instance`, `volume`, …
    pub resource_type: &'static str,
    pub arn: String,
    pub tags: Vec<Tag>,
}

type Find = fn(&State, &str, &str, &str) -> Result<Tagged>;
/// The change that stores new tags; `None` for derived resources, whose
/// tags go to a [`ResourceTags`] record.
type Put = fn(&State, &str, Vec<Tag>) -> Option<Change>;

/// One taggable kind.
struct Kind {
    prefix: &'static str,
    find: Find,
    put: Put,
}

const KINDS: &[Kind] = &[
    Kind {
        prefix: "i-",
        find: find_instance,
        put: put_instance,
    },
    Kind {
        prefix: "vol-",
        find: find_vol,
        put: put_volume,
    },
    Kind {
        prefix: "vpc-",
        find: find_vpc,
        put: put_vpc,
    },
    Kind {
        prefix: "subnet-",
        find: find_subnet,
        put: put_subnet,
    },
    Kind {
        prefix: "sg-",
        find: find_group,
        put: put_group,
    },
    Kind {
        prefix: "eni-",
        find: find_interface,
        put: put_interface,
    },
    Kind {
        prefix: "lt-",
        find: find_template,
        put: put_template,
    },
    Kind {
        prefix: "key-",
        find: find_key,
        put: put_key,
    },
    Kind {
        prefix: "ami-",
        find: find_image,
        put: put_image,
    },
];

fn find_template(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let r = crate::template::TemplateRef::Id(id.to_string());
    let t = crate::template::find(st, account, region, &r)?;
    Ok(tagged(&t.id, "launch-template", t.arn(), &t.tags))
}

fn put_template(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut t = st.launch_templates.get(id)?.clone();
    t.tags = tags;
    Some(Change::Put(Entity::LaunchTemplate(t)))
}

fn find_key(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    st.key_pairs
        .get(id)
        .filter(|k| k.account == account && k.region == region)
        .map(|k| tagged(&k.id, "key-pair", k.arn(), &k.tags))
        .ok_or_else(|| {
            ServiceError::InvalidKeyPairNotFound(format!("The key pair '{id}' does not exist"))
        })
}

fn put_key(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut k = st.key_pairs.get(id)?.clone();
    k.tags = tags;
    Some(Change::Put(Entity::KeyPair(k)))
}

/// Only the account's own images take tags (the catalogue's are Amazon's).
fn find_image(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    if !crate::image::valid_image_id(id) {
        return Err(crate::image::malformed(id));
    }
    st.images
        .get(id)
        .filter(|i| i.account == account && i.region == region)
        .map(|i| tagged(&i.id, "image", i.arn(), &i.tags))
        .ok_or_else(|| crate::image::not_found(id))
}

fn put_image(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut i = st.images.get(id)?.clone();
    i.tags = tags;
    Some(Change::Put(Entity::Image(i)))
}

fn tagged(id: &str, resource_type: &'static str, arn: String, tags: &[Tag]) -> Tagged {
    Tagged {
        id: id.to_string(),
        resource_type,
        arn,
        tags: tags.to_vec(),
    }
}

fn find_instance(st: &State, account: &str, _: &str, id: &str) -> Result<Tagged> {
    let i = crate::ec2::lookup_one(st, account, id)?;
    Ok(tagged(&i.id, "instance", i.arn(), &i.tags))
}

fn put_instance(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut i = (**st.instances.get(id)?).clone();
    i.tags = tags;
    Some(Change::Put(Entity::Instance(i)))
}

fn find_vol(st: &State, account: &str, _: &str, id: &str) -> Result<Tagged> {
    let v = find_volume(st, account, id)?;
    Ok(tagged(&v.id, "volume", v.arn(), &v.tags))
}

fn put_volume(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut v = st.volumes.get(id)?.clone();
    v.tags = tags;
    Some(Change::Put(Entity::Volume(v)))
}

fn find_vpc(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let v = network::find_vpc(st, account, region, id)?;
    Ok(tagged(&v.id, "vpc", v.arn(), &v.tags))
}

fn put_vpc(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut v = st.vpcs.get(id)?.clone();
    v.tags = tags;
    Some(Change::Put(Entity::Vpc(v)))
}

fn find_subnet(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let s = network::find_subnet(st, account, region, id)?;
    Ok(tagged(&s.id, "subnet", s.arn(), &s.tags))
}

fn put_subnet(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut s = st.subnets.get(id)?.clone();
    s.tags = tags;
    Some(Change::Put(Entity::Subnet(s)))
}

fn find_group(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let g = network::find_group(st, account, region, id)?;
    Ok(tagged(&g.id, "security-group", g.arn(), &g.tags))
}

fn put_group(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut g = st.security_groups.get(id)?.clone();
    g.tags = tags;
    Some(Change::Put(Entity::SecurityGroup(g)))
}

fn find_interface(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let e = crate::eni::find_interface(st, account, region, id)?;
    Ok(tagged(id, "network-interface", e.arn(), &e.tags))
}

/// A created interface keeps its tags; a primary one's go to a
/// [`ResourceTags`] record.
fn put_interface(st: &State, id: &str, tags: Vec<Tag>) -> Option<Change> {
    let mut e = st.network_interfaces.get(id)?.clone();
    e.tags = tags;
    Some(Change::Put(Entity::NetworkInterface(e)))
}

/// The tags of a derived resource (empty when it has none).
pub fn derived_tags(st: &State, id: &str) -> Vec<Tag> {
    st.resource_tags
        .get(id)
        .map(|r| r.tags.clone())
        .unwrap_or_default()
}

/// The resource an id names: `InvalidID` for an id of no kind keycard
/// has, the kind's own errors for malformed or unknown ones.
pub fn find_taggable(st: &State, account: &str, region: &str, id: &str) -> Result<Tagged> {
    let kind = KINDS
        .iter()
        .find(|k| id.starts_with(k.prefix))
        .ok_or_else(|| ec2_error("InvalidID", format!("The ID '{id}' is not valid")))?;
    (kind.find)(st, account, region, id)
}

/// How a CreateTags or DeleteTags call changes tags.
#[derive(Debug, Clone)]
pub enum TagEdit {
    /// Add or overwrite.
    Set(Vec<Tag>),
    /// Remove by key, or by key and value when a value is given; an
    /// empty list removes every tag.
    Remove(Vec<(String, Option<String>)>),
}

impl TagEdit {
    fn apply(&self, tags: &[Tag]) -> Result<Vec<Tag>> {
        let mut out = tags.to_vec();
        match self {
            TagEdit::Set(new) => {
                for t in new {
                    match out.iter_mut().find(|x| x.key == t.key) {
                        Some(x) => x.value = t.value.clone(),
                        None => out.push(t.clone()),
                    }
                }
                if out.len() > 50 {
                    return Err(ServiceError::Modeled(
                        "TagLimitExceeded",
                        400,
                        "The maximum number of Tags for a resource has been reached.".into(),
                    ));
                }
            }
            TagEdit::Remove(keys) if keys.is_empty() => out.clear(),
            TagEdit::Remove(keys) => out.retain(|t| {
                !keys
                    .iter()
                    .any(|(k, v)| *k == t.key && v.as_ref().is_none_or(|v| *v == t.value))
            }),
        }
        Ok(out)
    }
}

/// Every resource the ids name, checked (all must exist).
pub fn find_all(st: &State, account: &str, region: &str, ids: &[String]) -> Result<Vec<Tagged>> {
    ids.iter()
        .map(|id| find_taggable(st, account, region, id))
        .collect()
}

/// Every tagged resource of the account in the region, for DescribeTags.
pub fn all_tagged(st: &State, account: &str, region: &str) -> Vec<Tagged> {
    let mut out = Vec::new();
    for i in st.instances.values() {
        if i.account == account && i.region == region {
            out.push(tagged(&i.id, "instance", i.arn(), &i.tags));
        }
    }
    for v in st.volumes.values() {
        if v.account == account && v.region == region {
            out.push(tagged(&v.id, "volume", v.arn(), &v.tags));
        }
    }
    for v in network::vpcs(st, account, region) {
        out.push(tagged(&v.id, "vpc", v.arn(), &v.tags));
    }
    for s in network::subnets(st, account, region) {
        out.push(tagged(&s.id, "subnet", s.arn(), &s.tags));
    }
    for g in network::security_groups(st, account, region) {
        out.push(tagged(&g.id, "security-group", g.arn(), &g.tags));
    }
    for e in vpc::network_interfaces(st, account, region) {
        out.push(tagged(&e.id, "network-interface", e.arn(), &e.tags));
    }
    let mine = |a: &str, r: &str| a == account && r == region;
    for t in st
        .launch_templates
        .values()
        .filter(|t| mine(&t.account, &t.region))
    {
        out.push(tagged(&t.id, "launch-template", t.arn(), &t.tags));
    }
    for k in st
        .key_pairs
        .values()
        .filter(|k| mine(&k.account, &k.region))
    {
        out.push(tagged(&k.id, "key-pair", k.arn(), &k.tags));
    }
    for i in st.images.values().filter(|i| mine(&i.account, &i.region)) {
        out.push(tagged(&i.id, "image", i.arn(), &i.tags));
    }
    out.retain(|t| !t.tags.is_empty());
    out
}

impl Keycard {
    /// The resources a CreateTags/DeleteTags call names (for the checks).
    pub fn taggables(&self, account: &str, region: &str, ids: &[String]) -> Result<Vec<Tagged>> {
        find_all(&self.state(), account, region, ids)
    }

    /// DescribeTags' resources.
    pub fn tagged_resources(&self, account: &str, region: &str) -> Vec<Tagged> {
        all_tagged(&self.state(), account, region)
    }

    /// Change the tags of every resource named; all-or-nothing.
    pub async fn edit_tags(
        &self,
        account: &str,
        region: &str,
        ids: &[String],
        edit: &TagEdit,
    ) -> Result<()> {
        if let TagEdit::Set(t) = edit {
            validate_tags(t)?;
        }
        self.mutate(|st| {
            let mut changes = Vec::new();
            for t in find_all(st, account, region, ids)? {
                let new = edit.apply(&t.tags)?;
                let kind = KINDS
                    .iter()
                    .find(|k| t.id.starts_with(k.prefix))
                    .ok_or_else(|| ServiceError::Internal(format!("no kind for {}", t.id)))?;
                let c = (kind.put)(st, &t.id, new.clone()).unwrap_or_else(|| {
                    Change::Put(Entity::ResourceTags(ResourceTags {
                        id: t.id.clone(),
                        account: account.to_string(),
                        region: region.to_string(),
                        tags: new,
                    }))
                });
                changes.push(c);
            }
            Ok((changes, ()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn edits() {
        let base = vec![t("a", "1"), t("b", "2")];
        let set = TagEdit::Set(vec![t("a", "9"), t("c", "3")])
            .apply(&base)
            .unwrap();
        assert_eq!(set, vec![t("a", "9"), t("b", "2"), t("c", "3")]);
        let by_value = TagEdit::Remove(vec![("a".into(), Some("x".into())), ("b".into(), None)]);
        assert_eq!(by_value.apply(&base).unwrap(), vec![t("a", "1")]);
        assert!(TagEdit::Remove(vec![]).apply(&base).unwrap().is_empty());
    }

    #[test]
    fn unknown_prefixes_are_invalid_ids() {
        let st = State::default();
        let e = find_taggable(&st, "111111111111", "us-east-1", "foo-123").unwrap_err();
        assert_eq!(e.code(), "InvalidID");
        let e = find_taggable(&st, "111111111111", "us-east-1", "vol-123").unwrap_err();
        assert_eq!(e.code(), "InvalidVolumeID.Malformed");
        let e = find_taggable(&st, "111111111111", "us-east-1", "i-0123456789abcdef0");
        assert_eq!(e.unwrap_err().code(), "InvalidInstanceID.NotFound");
    }
}
