//! EC2 images (AMIs): a small built-in catalogue of public images every
//! account sees, in every region, plus the images an account registers
//! itself (RegisterImage / DeregisterImage). RunInstances launches only
//! images that exist and are available to the caller.

use serde::{Deserialize, Serialize};

use crate::ec2::{Filter, check_filters, hex_id, validate_tags, wildcard};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::state::State;
use crate::{Keycard, now};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// `ami-` + 17 hex digits.
    pub id: String,
    /// The owner's account id.
    pub account: String,
    pub region: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// i386 | x86_64 | arm64 | x86_64_mac | arm64_mac
    pub architecture: String,
    pub root_device_name: String,
    /// hvm | paravirtual
    pub virtualization_type: String,
    #[serde(default)]
    pub image_location: Option<String>,
    #[serde(default)]
    pub ena_support: bool,
    #[serde(default)]
    pub boot_mode: Option<String>,
    #[serde(default)]
    pub imds_support: Option<String>,
    /// Epoch seconds.
    pub creation_time: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `amazon` for the built-in catalogue's Amazon images.
    #[serde(default)]
    pub owner_alias: Option<String>,
    #[serde(default)]
    pub public: bool,
}

impl Image {
    /// Images have no account in their ARN.
    pub fn arn(&self) -> String {
        format!("arn:aws:ec2:{}::image/{}", self.region, self.id)
    }

    pub fn state(&self) -> &'static str {
        "available"
    }

    pub fn platform_details(&self) -> &'static str {
        "Linux/UNIX"
    }
}

/// Amazon's account for its public Amazon Linux images.
pub const AMAZON_OWNER: &str = "137112412989";
/// Canonical's account for its Ubuntu images.
pub const CANONICAL_OWNER: &str = "099720109477";

/// One built-in image: (id, owner, alias, name, architecture,
/// description).
type CatalogueEntry = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    &'static str,
);

/// The built-in catalogue. `ami-0abcdef1234567890` is the id AWS's documentation
/// uses in its examples; keycard serves it as Amazon Linux 2023.
const CATALOGUE: &[CatalogueEntry] = &[
    (
        "ami-0abcdef1234567890",
        AMAZON_OWNER,
        Some("amazon"),
        "al2023-ami-2023.6.20241212.0-kernel-6.1-x86_64",
        "x86_64",
        "Amazon Linux 2023 AMI 2023.6.20241212.0 x86_64 HVM kernel-6.1",
    ),
    (
        "ami-0a1b2c3d4e5f67890",
        AMAZON_OWNER,
        Some("amazon"),
        "al2023-ami-2023.6.20241212.0-kernel-6.1-arm64",
        "arm64",
        "Amazon Linux 2023 AMI 2023.6.20241212.0 arm64 HVM kernel-6.1",
    ),
    (
        "ami-0f1e2d3c4b5a69788",
        AMAZON_OWNER,
        Some("amazon"),
        "amzn2-ami-kernel-5.10-hvm-2.0.20241217.0-x86_64-gp2",
        "x86_64",
        "Amazon Linux 2 Kernel 5.10 AMI 2.0.20241217.0 x86_64 HVM gp2",
    ),
    (
        "ami-04b4f1a9cf54c11d0",
        CANONICAL_OWNER,
        None,
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20241206",
        "x86_64",
        "Canonical, Ubuntu, 24.04, amd64 noble image",
    ),
    (
        "ami-0c3b8e1d2a4f56789",
        CANONICAL_OWNER,
        None,
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20241206",
        "arm64",
        "Canonical, Ubuntu, 24.04, arm64 noble image",
    ),
];

/// When the catalogue's images were published (2024-12-12T00:00:00Z).
const CATALOGUE_TIME: i64 = 1_733_961_600;

/// The catalogue as seen from `region`.
pub fn catalogue(region: &str) -> Vec<Image> {
    CATALOGUE
        .iter()
        .map(|&(id, owner, alias, name, arch, desc)| Image {
            id: id.into(),
            account: owner.into(),
            region: region.into(),
            name: name.into(),
            description: Some(desc.into()),
            architecture: arch.into(),
            root_device_name: "/dev/xvda".into(),
            virtualization_type: "hvm".into(),
            image_location: Some(format!("{}/{name}", alias.unwrap_or(owner))),
            ena_support: true,
            boot_mode: Some("uefi-preferred".into()),
            imds_support: Some("v2.0").filter(|_| alias.is_some()).map(str::to_string),
            creation_time: CATALOGUE_TIME,
            tags: Vec::new(),
            owner_alias: alias.map(str::to_string),
            public: true,
        })
        .collect()
}

/// `ami-` plus 8 or 17 lowercase hex digits.
pub fn valid_image_id(id: &str) -> bool {
    id.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

pub fn malformed(id: &str) -> ServiceError {
    ServiceError::InvalidAmiIdMalformed(format!("Invalid id: \"{id}\" (expecting \"ami-...\")"))
}

pub fn not_found(id: &str) -> ServiceError {
    ServiceError::InvalidAmiIdNotFound(format!("The image id '[{id}]' does not exist"))
}

/// Every image `account` may launch in `region`: the catalogue and its own.
pub fn visible(st: &State, account: &str, region: &str) -> Vec<Image> {
    let mut all = catalogue(region);
    all.extend(
        st.images
            .values()
            .filter(|i| i.region == region && (i.account == account || i.public))
            .cloned(),
    );
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// The image a RunInstances ImageId names.
pub fn resolve(st: &State, account: &str, region: &str, id: &str) -> Result<Image> {
    if !valid_image_id(id) {
        return Err(malformed(id));
    }
    visible(st, account, region)
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| not_found(id))
}

const IMAGE_FILTERS: &[&str] = &[
    "architecture",
    "description",
    "ena-support",
    "hypervisor",
    "image-id",
    "image-type",
    "is-public",
    "name",
    "owner-alias",
    "owner-id",
    "platform-details",
    "root-device-name",
    "root-device-type",
    "state",
    "tag-key",
    "tag-value",
    "virtualization-type",
    "boot-mode",
    "imds-support",
];

fn matches(i: &Image, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|p| wildcard(p, v));
    let opt = |v: Option<&str>| v.is_some_and(any);
    match f.name.as_str() {
        "architecture" => any(&i.architecture),
        "description" => opt(i.description.as_deref()),
        "ena-support" => any(if i.ena_support { "true" } else { "false" }),
        "hypervisor" => any("xen"),
        "image-id" => any(&i.id),
        "image-type" => any("machine"),
        "is-public" => any(if i.public { "true" } else { "false" }),
        "name" => any(&i.name),
        "owner-alias" => opt(i.owner_alias.as_deref()),
        "owner-id" => any(&i.account),
        "platform-details" => any(i.platform_details()),
        "root-device-name" => any(&i.root_device_name),
        "root-device-type" => any("ebs"),
        "state" => any(i.state()),
        "virtualization-type" => any(&i.virtualization_type),
        "boot-mode" => opt(i.boot_mode.as_deref()),
        "imds-support" => opt(i.imds_support.as_deref()),
        "tag-key" => i.tags.iter().any(|t| any(&t.key)),
        "tag-value" => i.tags.iter().any(|t| any(&t.value)),
        name => name
            .strip_prefix("tag:")
            .is_some_and(|k| i.tags.iter().any(|t| t.key == k && any(&t.value))),
    }
}

/// DescribeImages' selection: ids, owners, executable-by and filters.
#[derive(Debug, Default)]
pub struct ImageQuery {
    pub ids: Vec<String>,
    pub owners: Vec<String>,
    pub executable_by: Vec<String>,
    pub filters: Vec<Filter>,
}

fn owned_by(i: &Image, owner: &str, account: &str) -> Result<bool> {
    Ok(match owner {
        "self" => i.account == account,
        "amazon" => i.owner_alias.as_deref() == Some("amazon"),
        "aws-marketplace" | "aws-backup-vault" => false,
        o if o.len() == 12 && o.bytes().all(|c| c.is_ascii_digit()) => i.account == o,
        o => {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Invalid owner ID: {o}"
            )));
        }
    })
}

fn executable_by(i: &Image, user: &str, account: &str) -> Result<bool> {
    Ok(match user {
        "all" => i.public,
        "self" => i.public || i.account == account,
        u if u.len() == 12 && u.bytes().all(|c| c.is_ascii_digit()) => i.public || i.account == u,
        u => {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Invalid user ID: {u}"
            )));
        }
    })
}

/// Validate RegisterImage's name as AWS does: 3–128 characters of
/// letters, digits and `( ) [ ] . / - ' @ _` and space.
fn check_image_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[]./-'@_ ".contains(c);
    if !(3..=128).contains(&name.chars().count()) || !name.chars().all(ok_char) {
        return Err(ServiceError::InvalidAmiNameMalformed(
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/', '_', '[', ']', ' ', '@', and '''".into(),
        ));
    }
    Ok(())
}

/// What RegisterImage asks for.
#[derive(Debug, Clone, Default)]
pub struct RegisterInput {
    pub name: String,
    pub description: Option<String>,
    pub architecture: Option<String>,
    pub root_device_name: Option<String>,
    pub virtualization_type: Option<String>,
    pub image_location: Option<String>,
    pub ena_support: bool,
    pub boot_mode: Option<String>,
    pub imds_support: Option<String>,
    pub tags: Vec<Tag>,
}

fn one_of(v: &Option<String>, field: &str, allowed: &[&str]) -> Result<()> {
    match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(ServiceError::InvalidParameterValue(
            format!("Value ({x}) for parameter {field} is invalid."),
        )),
        _ => Ok(()),
    }
}

/// Check a RegisterImage request before anything is written.
pub fn check_register(r: &RegisterInput) -> Result<()> {
    check_image_name(&r.name)?;
    if r.description.as_ref().is_some_and(|d| d.len() > 255) {
        return Err(ServiceError::InvalidParameterValue(
            "Value for parameter description is invalid. Length exceeds maximum of 255".into(),
        ));
    }
    one_of(
        &r.architecture,
        "architecture",
        &["i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"],
    )?;
    one_of(
        &r.virtualization_type,
        "virtualizationType",
        &["hvm", "paravirtual"],
    )?;
    one_of(
        &r.boot_mode,
        "bootMode",
        &["legacy-bios", "uefi", "uefi-preferred"],
    )?;
    one_of(&r.imds_support, "imdsSupport", &["v2.0"])?;
    validate_tags(&r.tags)
}

impl Keycard {
    /// DescribeImages, sorted by id; ids asked for must all be visible.
    pub fn describe_images(
        &self,
        account: &str,
        region: &str,
        q: &ImageQuery,
    ) -> Result<Vec<Image>> {
        check_filters(&q.filters, IMAGE_FILTERS)?;
        if let Some(bad) = q.ids.iter().find(|i| !valid_image_id(i)) {
            return Err(malformed(bad));
        }
        let st = self.state();
        let all = visible(&st, account, region);
        if let Some(missing) = q.ids.iter().find(|id| !all.iter().any(|i| &i.id == *id)) {
            return Err(not_found(missing));
        }
        let mut out = Vec::new();
        for i in all {
            let wanted = (q.ids.is_empty() || q.ids.contains(&i.id))
                && (q.owners.is_empty() || any_ok(&q.owners, |o| owned_by(&i, o, account))?)
                && (q.executable_by.is_empty()
                    || any_ok(&q.executable_by, |u| executable_by(&i, u, account))?)
                && q.filters.iter().all(|f| matches(&i, f));
            if wanted {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// RegisterImage: names are unique per account and region.
    pub async fn register_image(
        &self,
        account: &str,
        region: &str,
        r: RegisterInput,
    ) -> Result<Image> {
        check_register(&r)?;
        self.mutate(|st| {
            if let Some(other) = st
                .images
                .values()
                .find(|i| i.account == account && i.region == region && i.name == r.name)
            {
                return Err(ServiceError::InvalidAmiNameDuplicate(format!(
                    "AMI name {} is already in use by AMI {}",
                    r.name, other.id
                )));
            }
            let img = Image {
                id: hex_id("ami-"),
                account: account.into(),
                region: region.into(),
                name: r.name.clone(),
                description: r.description.clone(),
                architecture: r.architecture.clone().unwrap_or_else(|| "x86_64".into()),
                root_device_name: r
                    .root_device_name
                    .clone()
                    .unwrap_or_else(|| "/dev/xvda".into()),
                virtualization_type: r
                    .virtualization_type
                    .clone()
                    .unwrap_or_else(|| "hvm".into()),
                image_location: r.image_location.clone(),
                ena_support: r.ena_support,
                boot_mode: r.boot_mode.clone(),
                imds_support: r.imds_support.clone(),
                creation_time: now(),
                tags: r.tags.clone(),
                owner_alias: None,
                public: false,
            };
            Ok((vec![Change::Put(Entity::Image(img.clone()))], img))
        })
        .await
    }

    /// The image DeregisterImage names: one of the caller's own.
    pub fn own_image(&self, account: &str, region: &str, id: &str) -> Result<Image> {
        if !valid_image_id(id) {
            return Err(malformed(id));
        }
        let st = self.state();
        let found = visible(&st, account, region)
            .into_iter()
            .find(|i| i.id == id);
        match found {
            Some(i) if i.account == account => Ok(i),
            Some(_) => Err(ServiceError::InvalidAmiIdUnavailable(format!(
                "The image ID '{id}' is not owned by this account and cannot be deregistered"
            ))),
            None => Err(not_found(id)),
        }
    }

    /// DeregisterImage: instances launched from it keep running.
    pub async fn deregister_image(&self, account: &str, region: &str, id: &str) -> Result<()> {
        self.mutate(|st| {
            let mine = st
                .images
                .get(id)
                .is_some_and(|i| i.account == account && i.region == region);
            if !mine {
                return Err(not_found(id));
            }
            Ok((vec![Change::Delete("image", id.to_string())], ()))
        })
        .await
    }
}

/// Whether any of `values` passes `f` (errors from `f` stop the search).
fn any_ok(values: &[String], f: impl Fn(&str) -> Result<bool>) -> Result<bool> {
    for v in values {
        if f(v)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_are_well_formed_and_distinct() {
        let c = catalogue("us-east-1");
        let mut ids: Vec<&str> = c.iter().map(|i| i.id.as_str()).collect();
        assert!(ids.iter().all(|i| valid_image_id(i)));
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
    }

    #[test]
    fn names_follow_aws_rules() {
        assert!(check_image_name("my-image (v1) [x] @2024").is_ok());
        assert!(check_image_name("ab").is_err());
        assert!(check_image_name("bad*name").is_err());
    }

    #[test]
    fn owners_and_users() {
        let i = &catalogue("us-east-1")[0];
        assert!(owned_by(i, "amazon", "111122223333").unwrap());
        assert!(!owned_by(i, "self", "111122223333").unwrap());
        assert!(owned_by(i, "nobody", "1").is_err());
        assert!(executable_by(i, "all", "111122223333").unwrap());
    }
}
