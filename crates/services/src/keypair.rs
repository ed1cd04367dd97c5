//! EC2 key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs,
//! DeleteKeyPair. keycard keeps the public key and its fingerprint; the
//! private key CreateKeyPair generates goes back to the caller once.
//! An instance launched with a key gets a copy of its public key, which
//! its metadata service serves at `public-keys/0/openssh-key`.

use serde::{Deserialize, Serialize};

use crate::ec2::{Filter, check_filters, hex_id, validate_tags, wildcard};
use crate::error::{Result, ServiceError};
use crate::model::{Change, Entity, Tag};
use crate::sshkey::{self, Created};
use crate::state::State;
use crate::{Keycard, now_ms};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyPair {
    /// `key-` + 17 hex digits.
    pub id: String,
    pub account: String,
    pub region: String,
    pub name: String,
    /// `rsa` | `ed25519`
    pub key_type: String,
    /// The OpenSSH public key line, without a comment.
    pub public_key: String,
    pub fingerprint: String,
    pub create_time_ms: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl KeyPair {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:key-pair/{}",
            self.region, self.account, self.name
        )
    }

    /// The public key as an instance's metadata service and
    /// DescribeKeyPairs show it: the key with its name as comment.
    pub fn openssh_line(&self) -> String {
        format!("{} {}", self.public_key, self.name)
    }
}

const KEY_FILTERS: &[&str] = &[
    "key-pair-id",
    "key-name",
    "fingerprint",
    "key-type",
    "tag-key",
];

fn not_found(name: &str) -> ServiceError {
    ServiceError::InvalidKeyPairNotFound(format!("The key pair '{name}' does not exist"))
}

/// Key names: 1..=255 ASCII characters (AWS's limit).
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || !name.is_ascii() {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Value ({name}) for parameter keyName is invalid. Length exceeds maximum of 255 ASCII characters or is empty"
        )));
    }
    Ok(())
}

/// The key named `name` in the account's region.
pub fn find<'a>(st: &'a State, account: &str, region: &str, name: &str) -> Option<&'a KeyPair> {
    st.key_pairs
        .values()
        .find(|k| k.account == account && k.region == region && k.name == name)
}

/// A RunInstances KeyName: it must exist.
pub fn resolve<'a>(st: &'a State, account: &str, region: &str, name: &str) -> Result<&'a KeyPair> {
    find(st, account, region, name).ok_or_else(|| not_found(name))
}

fn matches(k: &KeyPair, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|p| wildcard(p, v));
    match f.name.as_str() {
        "key-pair-id" => any(&k.id),
        "key-name" => any(&k.name),
        "fingerprint" => any(&k.fingerprint),
        "key-type" => any(&k.key_type),
        "tag-key" => k.tags.iter().any(|t| any(&t.key)),
        name => name
            .strip_prefix("tag:")
            .is_some_and(|key| k.tags.iter().any(|t| t.key == key && any(&t.value))),
    }
}

/// What CreateKeyPair asks for.
pub struct CreateKey<'a> {
    pub name: &'a str,
    pub key_type: &'a str,
    pub format: &'a str,
    pub tags: Vec<Tag>,
}

/// Check a CreateKeyPair request before anything is generated.
pub fn check_create(c: &CreateKey<'_>) -> Result<()> {
    check_name(c.name)?;
    if !matches!(c.key_type, "rsa" | "ed25519") {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Value ({}) for parameter keyType is invalid. Valid values: rsa, ed25519",
            c.key_type
        )));
    }
    if !matches!(c.format, "pem" | "ppk") {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Value ({}) for parameter keyFormat is invalid. Valid values: pem, ppk",
            c.format
        )));
    }
    validate_tags(&c.tags)
}

impl Keycard {
    /// CreateKeyPair: the stored pair and the private key (once).
    pub async fn create_key_pair(
        &self,
        account: &str,
        region: &str,
        c: CreateKey<'_>,
    ) -> Result<(KeyPair, keycard_proto::secret::SecretKey)> {
        check_create(&c)?;
        let Created { public, material } = sshkey::generate(c.key_type, c.format, c.name)?;
        let pair = self
            .put_key_pair(account, region, c.name, public, c.tags)
            .await?;
        Ok((pair, material))
    }

    /// ImportKeyPair: an OpenSSH (or RFC 4716) public key.
    pub async fn import_key_pair(
        &self,
        account: &str,
        region: &str,
        name: &str,
        material: &[u8],
        tags: Vec<Tag>,
    ) -> Result<KeyPair> {
        check_name(name)?;
        validate_tags(&tags)?;
        let public = sshkey::import(material)?;
        self.put_key_pair(account, region, name, public, tags).await
    }

    async fn put_key_pair(
        &self,
        account: &str,
        region: &str,
        name: &str,
        public: sshkey::PublicKey,
        tags: Vec<Tag>,
    ) -> Result<KeyPair> {
        self.mutate(|st| {
            if find(st, account, region, name).is_some() {
                return Err(ServiceError::InvalidKeyPairDuplicate(format!(
                    "The keypair '{name}' already exists."
                )));
            }
            let k = KeyPair {
                id: hex_id("key-"),
                account: account.into(),
                region: region.into(),
                name: name.into(),
                key_type: public.key_type.into(),
                public_key: public.openssh.clone(),
                fingerprint: public.fingerprint.clone(),
                create_time_ms: now_ms(),
                tags: tags.clone(),
            };
            Ok((vec![Change::Put(Entity::KeyPair(k.clone()))], k))
        })
        .await
    }

    /// DescribeKeyPairs: every name and id asked for must exist.
    pub fn describe_key_pairs(
        &self,
        account: &str,
        region: &str,
        names: &[String],
        ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<KeyPair>> {
        check_filters(filters, KEY_FILTERS)?;
        let st = self.state();
        let mine: Vec<&KeyPair> = st
            .key_pairs
            .values()
            .filter(|k| k.account == account && k.region == region)
            .collect();
        if let Some(n) = names.iter().find(|n| !mine.iter().any(|k| &k.name == *n)) {
            return Err(not_found(n));
        }
        if let Some(i) = ids.iter().find(|i| !mine.iter().any(|k| &k.id == *i)) {
            return Err(ServiceError::InvalidKeyPairNotFound(format!(
                "The key pair '{i}' does not exist"
            )));
        }
        let mut out: Vec<KeyPair> = mine
            .into_iter()
            .filter(|k| names.is_empty() || names.contains(&k.name))
            .filter(|k| ids.is_empty() || ids.contains(&k.id))
            .filter(|k| filters.iter().all(|f| matches(k, f)))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The key pair a DeleteKeyPair names, if it exists (for its check).
    pub fn find_key_pair(
        &self,
        account: &str,
        region: &str,
        name: Option<&str>,
        id: Option<&str>,
    ) -> Option<KeyPair> {
        let st = self.state();
        st.key_pairs
            .values()
            .find(|k| {
                k.account == account
                    && k.region == region
                    && (name == Some(k.name.as_str()) || id == Some(k.id.as_str()))
            })
            .cloned()
    }

    /// DeleteKeyPair: deleting a key that is not there succeeds, as on
    /// AWS. Instances launched with it keep their copy of the public key.
    pub async fn delete_key_pair(&self, key: Option<&KeyPair>) -> Result<()> {
        let Some(k) = key else {
            return Ok(());
        };
        let id = k.id.clone();
        self.mutate(|st| {
            let changes = if st.key_pairs.contains_key(&id) {
                vec![Change::Delete("key_pair", id.clone())]
            } else {
                Vec::new()
            };
            Ok((changes, ()))
        })
        .await
    }
}
