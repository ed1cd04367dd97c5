//! A user's other credentials (SSH public keys, signing certificates,
//! service-specific credentials) and the account's server certificates.
//! No HTTP here; `server/src/iam_more.rs` parses and renders.
//!
//! Secrets: a server certificate's private key is kept only sealed under
//! `master.key`, a service-specific password only as a salted hash; both
//! are typed `SecretKey` so `Debug` prints `***`, and neither is returned
//! after the call that made it.

use std::collections::BTreeMap;

use base64::Engine;
use keycard_proto::secret::SecretKey;
use serde::{Deserialize, Serialize};

use crate::certs;
use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::iam::no_such;
use crate::model::*;
use crate::state::State;
use crate::validate;
use crate::{Keycard, now};

/// An uploaded SSH public key (`APKA…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKey {
    pub id: String,
    /// The key as uploaded (OpenSSH or PEM), trimmed.
    pub body: String,
    pub fingerprint: String,
    pub status: KeyStatus,
    pub uploaded: Epoch,
}

/// An X.509 signing certificate of a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningCert {
    pub id: String,
    pub body: String,
    pub status: KeyStatus,
    pub uploaded: Epoch,
}

/// A service-specific credential (`ACCA…`); the password only hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceCred {
    pub id: String,
    pub service: String,
    pub service_user_name: String,
    pub hash: SecretKey,
    pub status: KeyStatus,
    pub created: Epoch,
    #[serde(default)]
    pub expires: Option<Epoch>,
}

/// The extra credentials a user holds, kept in its record so they follow
/// renames and go with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserCredentials {
    #[serde(default)]
    pub ssh_keys: Vec<SshKey>,
    #[serde(default)]
    pub signing_certs: Vec<SigningCert>,
    #[serde(default)]
    pub service_creds: Vec<ServiceCred>,
}

impl UserCredentials {
    pub fn is_empty(&self) -> bool {
        self.ssh_keys.is_empty() && self.signing_certs.is_empty() && self.service_creds.is_empty()
    }

    /// What DeleteUser must be told to delete first, if anything.
    pub fn first_kind(&self) -> Option<&'static str> {
        if !self.ssh_keys.is_empty() {
            Some("SSH public keys")
        } else if !self.signing_certs.is_empty() {
            Some("signing certificates")
        } else if !self.service_creds.is_empty() {
            Some("service specific credentials")
        } else {
            None
        }
    }
}

/// A record with an id and a status (the three kinds of user credential).
trait Credential {
    fn id(&self) -> &str;
    fn status_mut(&mut self) -> &mut KeyStatus;
}

macro_rules! credential {
    ($t:ty) => {
        impl Credential for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn status_mut(&mut self) -> &mut KeyStatus {
                &mut self.status
            }
        }
    };
}
credential!(SshKey);
credential!(SigningCert);
credential!(ServiceCred);

fn set_status_in<T: Credential>(list: &mut [T], id: &str, status: KeyStatus) -> bool {
    list.iter_mut()
        .find(|c| c.id() == id)
        .map(|c| *c.status_mut() = status)
        .is_some()
}

fn remove_in<T: Credential>(list: &mut Vec<T>, id: &str) -> bool {
    let before = list.len();
    list.retain(|c| c.id() != id);
    list.len() != before
}

/// Which of a user's credential lists an update or delete acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredKind {
    SshKey,
    SigningCert,
    ServiceCred,
}

impl CredKind {
    fn set_status(self, c: &mut UserCredentials, id: &str, status: KeyStatus) -> bool {
        match self {
            CredKind::SshKey => set_status_in(&mut c.ssh_keys, id, status),
            CredKind::SigningCert => set_status_in(&mut c.signing_certs, id, status),
            CredKind::ServiceCred => set_status_in(&mut c.service_creds, id, status),
        }
    }

    fn remove(self, c: &mut UserCredentials, id: &str) -> bool {
        match self {
            CredKind::SshKey => remove_in(&mut c.ssh_keys, id),
            CredKind::SigningCert => remove_in(&mut c.signing_certs, id),
            CredKind::ServiceCred => remove_in(&mut c.service_creds, id),
        }
    }

    fn missing(self, id: &str) -> ServiceError {
        match self {
            CredKind::SshKey => no_ssh_key(id),
            CredKind::SigningCert => no_cert(id),
            CredKind::ServiceCred => no_cred(id),
        }
    }
}

/// A server certificate (`ASCA…`). The private key is sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerCert {
    pub name: String,
    pub path: String,
    pub id: String,
    pub body: String,
    #[serde(default)]
    pub chain: Option<String>,
    pub sealed_key: SecretKey,
    pub uploaded: Epoch,
    pub expiration: Epoch,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ServerCert {
    pub fn arn(&self, account: &str) -> String {
        format!(
            "arn:aws:iam::{account}:server-certificate{}{}",
            self.path, self.name
        )
    }
}

/// A DeleteServiceLinkedRole task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionTask {
    pub id: String,
    pub created: Epoch,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Account-wide records of the operations in this module and iam_more.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountExtras {
    /// By lower-cased name.
    #[serde(default)]
    pub server_certs: BTreeMap<String, ServerCert>,
    /// By task id.
    #[serde(default)]
    pub deletion_tasks: BTreeMap<String, DeletionTask>,
    /// `SetSecurityTokenServicePreferences`: `v1Token` (default) or `v2Token`.
    #[serde(default)]
    pub token_version: Option<String>,
    /// GenerateOrganizationsAccessReport jobs: id -> creation time.
    #[serde(default)]
    pub org_reports: BTreeMap<String, Epoch>,
}

impl AccountExtras {
    pub fn is_empty(&self) -> bool {
        self.server_certs.is_empty()
            && self.deletion_tasks.is_empty()
            && self.token_version.is_none()
            && self.org_reports.is_empty()
    }
}

/// A user's credentials quota (AWS: 5 SSH keys, 2 signing certificates,
/// 2 service-specific credentials per service).
const SSH_KEYS_PER_USER: usize = 5;
const CERTS_PER_USER: usize = 2;
const CREDS_PER_SERVICE: usize = 2;
/// Server certificates per account (AWS's default quota).
const SERVER_CERTS_PER_ACCOUNT: usize = 20;

/// The services that issue service-specific credentials.
pub const CRED_SERVICES: &[&str] = &[
    "codecommit.amazonaws.com",
    "cassandra.amazonaws.com",
    "bedrock.amazonaws.com",
];

/// A random id: `prefix` and base32 characters, `len` in all.
fn random_id(prefix: &str, len: usize) -> String {
    let mut id = keycard_proto::ids::unique_id(prefix, &crypto::random_bytes::<16>());
    id.push_str(&crate::iam_governance::base32(&crypto::random_bytes::<10>()));
    id.chars().take(len).collect()
}

fn user_of(st: &State, account: &str, name: &str) -> Result<User> {
    st.user(account, name)
        .cloned()
        .ok_or_else(|| no_such("user", name))
}

pub(crate) fn account_of(st: &State, account: &str) -> Result<Account> {
    st.accounts
        .get(account)
        .cloned()
        .ok_or_else(|| ServiceError::NoSuchEntity(format!("account {account} not found")))
}

fn put_user(u: User) -> Vec<Change> {
    vec![Change::Put(Entity::User(u))]
}

/// The id parameter's model constraint (`[\w]+`, min length).
pub fn check_id(field: &str, id: &str, min: usize) -> Result<()> {
    let ok = id.len() >= min
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        return Ok(());
    }
    Err(ServiceError::ValidationError(if id.len() < min {
        format!(
            "1 validation error detected: Value '{id}' at '{field}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        )
    } else {
        format!(
            "1 validation error detected: Value '{id}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]+"
        )
    }))
}

/// A body parameter's model constraint: 1..=max of tab, CR, LF, U+0020–U+00FF.
pub fn check_body(field: &str, body: &str, max: usize) -> Result<()> {
    if body.is_empty() || body.chars().count() > max {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and {max}"
        )));
    }
    if !body
        .chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FF}'))
    {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+"
        )));
    }
    Ok(())
}

fn no_ssh_key(id: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("The Public Key with id {id} cannot be found."))
}

fn no_cert(id: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("The Certificate with id {id} cannot be found."))
}

fn no_cred(id: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("No such credential {id} exists"))
}

pub fn no_server_cert(name: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!(
        "The Server Certificate with name {name} cannot be found."
    ))
}

/// A fresh service password: 32 random bytes, base64 (44 characters).
fn new_service_password() -> SecretKey {
    SecretKey::new(base64::engine::general_purpose::STANDARD.encode(crypto::random_bytes::<32>()))
}

impl Keycard {
    /// Change the account's extras with `f`, as one write.
    pub(crate) async fn with_extras<T>(
        &self,
        account: &str,
        mut f: impl FnMut(&mut AccountExtras) -> Result<T>,
    ) -> Result<T> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            let out = f(&mut a.extras)?;
            Ok((vec![Change::Put(Entity::Account(a))], out))
        })
        .await
    }

    // ------------------------------------------------------------ SSH keys

    pub async fn upload_ssh_key(&self, account: &str, user: &str, body: &str) -> Result<SshKey> {
        check_body("sSHPublicKeyBody", body, 16384)?;
        let key = certs::ssh_public_key(body)?;
        let rec = SshKey {
            id: random_id("APKA", 20),
            body: body.trim().to_string(),
            fingerprint: key.fingerprint(),
            status: KeyStatus::Active,
            uploaded: now(),
        };
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            if u.creds.ssh_keys.iter().any(|k| k.fingerprint == rec.fingerprint) {
                return Err(ServiceError::DuplicateSshPublicKey(
                    "The request was rejected because the SSH public key is already associated with the specified IAM user.".into(),
                ));
            }
            if u.creds.ssh_keys.len() >= SSH_KEYS_PER_USER {
                return Err(ServiceError::LimitExceeded(format!(
                    "Cannot exceed quota for PublicKeysPerUser: {SSH_KEYS_PER_USER}"
                )));
            }
            u.creds.ssh_keys.push(rec.clone());
            Ok((put_user(u), rec.clone()))
        })
        .await
    }

    /// The key and its parsed form (for the PEM encoding).
    pub fn get_ssh_key(
        &self,
        account: &str,
        user: &str,
        id: &str,
    ) -> Result<(SshKey, certs::SshPublicKey)> {
        let st = self.state();
        let u = user_of(&st, account, user)?;
        let k = u
            .creds
            .ssh_keys
            .iter()
            .find(|k| k.id == id)
            .cloned()
            .ok_or_else(|| no_ssh_key(id))?;
        let parsed = certs::ssh_public_key(&k.body)?;
        Ok((k, parsed))
    }

    pub fn list_ssh_keys(&self, account: &str, user: &str) -> Result<Vec<SshKey>> {
        Ok(user_of(&self.state(), account, user)?.creds.ssh_keys)
    }

    // ---------------------------------------------- signing certificates

    pub async fn upload_signing_cert(
        &self,
        account: &str,
        user: &str,
        body: &str,
    ) -> Result<SigningCert> {
        check_body("certificateBody", body, 16384)?;
        let cert = certs::certificate(body, now())?;
        let rec = SigningCert {
            id: random_id("", 28),
            body: body.trim().to_string(),
            status: KeyStatus::Active,
            uploaded: now(),
        };
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            let taken = st
                .users
                .values()
                .filter(|x| x.account == account)
                .flat_map(|x| x.creds.signing_certs.iter())
                .any(|c| {
                    certs::certificates(&c.body)
                        .ok()
                        .and_then(|v| v.into_iter().next())
                        .is_some_and(|c| c.der == cert.der)
                });
            if taken {
                return Err(ServiceError::DuplicateCertificate(
                    "The request was rejected because the same certificate is associated with an IAM user in the account.".into(),
                ));
            }
            if u.creds.signing_certs.len() >= CERTS_PER_USER {
                return Err(ServiceError::LimitExceeded(format!(
                    "Cannot exceed quota for CertificatesPerUser: {CERTS_PER_USER}"
                )));
            }
            u.creds.signing_certs.push(rec.clone());
            Ok((put_user(u), rec.clone()))
        })
        .await
    }

    pub fn list_signing_certs(&self, account: &str, user: &str) -> Result<Vec<SigningCert>> {
        Ok(user_of(&self.state(), account, user)?.creds.signing_certs)
    }

    // ----------------------------------------- service-specific credentials

    /// A new credential and its clear password (shown once).
    pub async fn create_service_cred(
        &self,
        account: &str,
        user: &str,
        service: &str,
        age_days: Option<u32>,
    ) -> Result<(ServiceCred, SecretKey)> {
        if !CRED_SERVICES.contains(&service) {
            return Err(ServiceError::ServiceNotSupported(format!(
                "The specified service {service} does not support service-specific credentials."
            )));
        }
        let password = new_service_password();
        let hash = crate::iam_governance::hash_blocking(password.expose()).await?;
        let created = now();
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            let n = u
                .creds
                .service_creds
                .iter()
                .filter(|c| c.service == service)
                .count();
            if n >= CREDS_PER_SERVICE {
                return Err(ServiceError::LimitExceeded(format!(
                    "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: {CREDS_PER_SERVICE}"
                )));
            }
            let c = ServiceCred {
                id: random_id("ACCA", 21),
                service: service.to_string(),
                service_user_name: format!("{}-at-{account}", u.name),
                hash: hash.clone(),
                status: KeyStatus::Active,
                created,
                expires: age_days.map(|d| created + i64::from(d) * 86_400),
            };
            u.creds.service_creds.push(c.clone());
            Ok((put_user(u), (c, password.clone())))
        })
        .await
    }

    /// A new password for an existing credential.
    pub async fn reset_service_cred(
        &self,
        account: &str,
        user: &str,
        id: &str,
    ) -> Result<(ServiceCred, SecretKey)> {
        let password = new_service_password();
        let hash = crate::iam_governance::hash_blocking(password.expose()).await?;
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            let c = u
                .creds
                .service_creds
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| no_cred(id))?;
            c.hash = hash.clone();
            let out = c.clone();
            Ok((put_user(u), (out, password.clone())))
        })
        .await
    }

    /// Credentials of one user, or of every user of the account.
    pub fn list_service_creds(
        &self,
        account: &str,
        user: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<(String, ServiceCred)>> {
        let st = self.state();
        let users: Vec<User> = match user {
            Some(u) => vec![user_of(&st, account, u)?],
            None => st
                .users
                .values()
                .filter(|u| u.account == account)
                .cloned()
                .collect(),
        };
        Ok(users
            .into_iter()
            .flat_map(|u| {
                let name = u.name.clone();
                u.creds
                    .service_creds
                    .into_iter()
                    .map(move |c| (name.clone(), c))
            })
            .filter(|(_, c)| service.is_none_or(|s| c.service == s))
            .collect())
    }

    /// Set the status of one of a user's SSH keys, signing certificates
    /// or service-specific credentials.
    pub async fn set_credential_status(
        &self,
        account: &str,
        user: &str,
        kind: CredKind,
        id: &str,
        status: KeyStatus,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            if !kind.set_status(&mut u.creds, id, status) {
                return Err(kind.missing(id));
            }
            Ok((put_user(u), ()))
        })
        .await
    }

    /// Delete one of a user's SSH keys, signing certificates or
    /// service-specific credentials.
    pub async fn delete_credential(
        &self,
        account: &str,
        user: &str,
        kind: CredKind,
        id: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            if !kind.remove(&mut u.creds, id) {
                return Err(kind.missing(id));
            }
            Ok((put_user(u), ()))
        })
        .await
    }

    // ----------------------------------------------- server certificates

    /// Upload a server certificate. The private key must match the
    /// certificate; it is sealed and never returned.
    pub async fn upload_server_cert(
        &self,
        account: &str,
        input: NewServerCert<'_>,
    ) -> Result<ServerCert> {
        validate::name("serverCertificateName", input.name, 128)?;
        validate::path("path", input.path)?;
        validate::tags(&input.tags)?;
        check_body("certificateBody", input.body, 16384)?;
        check_body("privateKey", input.private_key.expose(), 16384)?;
        if let Some(c) = input.chain {
            check_body("certificateChain", c, 2_097_152)?;
            certs::certificates(c)?;
        }
        let cert = certs::certificate(input.body, now())?;
        certs::check_private_key(input.private_key.expose(), &cert)?;
        let id = random_id("ASCA", 21);
        let rec = ServerCert {
            name: input.name.to_string(),
            path: input.path.to_string(),
            id: id.clone(),
            body: input.body.trim().to_string(),
            chain: input.chain.map(|c| c.trim().to_string()),
            sealed_key: SecretKey::new(crypto::seal_secret(
                self.master(),
                input.private_key.expose(),
                &id,
            )),
            uploaded: now(),
            expiration: cert.not_after,
            tags: input.tags.clone(),
        };
        self.with_extras(account, |x| {
            let key = input.name.to_ascii_lowercase();
            if x.server_certs.contains_key(&key) {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "The Server Certificate with name {} already exists.",
                    input.name
                )));
            }
            if x.server_certs.len() >= SERVER_CERTS_PER_ACCOUNT {
                return Err(ServiceError::LimitExceeded(format!(
                    "Cannot exceed quota for ServerCertificatesPerAccount: {SERVER_CERTS_PER_ACCOUNT}"
                )));
            }
            x.server_certs.insert(key, rec.clone());
            Ok(rec.clone())
        })
        .await
    }

    pub fn get_server_cert(&self, account: &str, name: &str) -> Result<ServerCert> {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.extras.server_certs.get(&name.to_ascii_lowercase()))
            .cloned()
            .ok_or_else(|| no_server_cert(name))
    }

    pub fn list_server_certs(&self, account: &str, prefix: &str) -> Vec<ServerCert> {
        self.state()
            .accounts
            .get(account)
            .map(|a| {
                a.extras
                    .server_certs
                    .values()
                    .filter(|c| c.path.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn update_server_cert(
        &self,
        account: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<()> {
        validate::renamed("newServerCertificateName", new_name, 128, new_path)?;
        self.with_extras(account, |x| {
            let mut c = x
                .server_certs
                .remove(&name.to_ascii_lowercase())
                .ok_or_else(|| no_server_cert(name))?;
            if let Some(n) = new_name {
                if !n.eq_ignore_ascii_case(name)
                    && x.server_certs.contains_key(&n.to_ascii_lowercase())
                {
                    return Err(ServiceError::EntityAlreadyExists(format!(
                        "The Server Certificate with name {n} already exists."
                    )));
                }
                c.name = n.to_string();
            }
            if let Some(p) = new_path {
                c.path = p.to_string();
            }
            x.server_certs.insert(c.name.to_ascii_lowercase(), c);
            Ok(())
        })
        .await
    }

    pub async fn delete_server_cert(&self, account: &str, name: &str) -> Result<()> {
        self.with_extras(account, |x| {
            x.server_certs
                .remove(&name.to_ascii_lowercase())
                .ok_or_else(|| no_server_cert(name))?;
            Ok(())
        })
        .await
    }
}

/// Input for UploadServerCertificate.
pub struct NewServerCert<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub body: &'a str,
    pub chain: Option<&'a str>,
    pub private_key: SecretKey,
    pub tags: Vec<Tag>,
}

/// Add or replace `tags` in `list`, then check the whole list.
pub fn merge_tags(list: &mut Vec<Tag>, tags: &[Tag]) -> Result<()> {
    validate::tags(tags)?;
    for t in tags {
        match list.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value.clone(),
            None => list.push(t.clone()),
        }
    }
    validate::tags(list)
}
