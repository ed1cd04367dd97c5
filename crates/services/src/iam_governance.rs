//! The IAM records governance tools read: login profiles and the account
//! password policy, virtual MFA devices, the account alias, and the
//! credential report. No HTTP here; `server/src/iam_governance.rs` parses
//! and renders.
//!
//! Secrets: passwords are kept only as a salted PBKDF2-HMAC-SHA256 hash,
//! MFA seeds only sealed under `master.key`; both are typed `SecretKey` so
//! `Debug` prints `***`.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use keycard_proto::secret::{SecretKey, ct_eq};
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::state::State;
use crate::{Keycard, now};

/// PBKDF2 rounds for new password hashes (OWASP's figure for SHA-256).
/// The count is stored with each hash, so it can change later.
const PBKDF2_ROUNDS: u32 = 600_000;

/// A user's console password (`CreateLoginProfile`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginProfile {
    pub created: Epoch,
    /// `pbkdf2-sha256$rounds$salt$hash` (base64); never the password.
    pub hash: SecretKey,
    pub reset_required: bool,
    /// When the password was last set (create, update, change).
    pub changed: Epoch,
    /// Earlier hashes, newest first, for `PasswordReusePrevention`.
    #[serde(default)]
    pub previous: Vec<SecretKey>,
    /// keycard has no console sign-in, so this stays `None` unless set
    /// by a future sign-in path; the report then says `no_information`.
    #[serde(default)]
    pub last_used: Option<Epoch>,
}

/// The account password policy, as `UpdateAccountPasswordPolicy` sets it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub minimum_length: u32,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub allow_users_to_change: bool,
    pub max_age_days: Option<u32>,
    pub reuse_prevention: Option<u32>,
    pub hard_expiry: Option<bool>,
}

impl Default for PasswordPolicy {
    /// AWS's values for parameters left out of UpdateAccountPasswordPolicy.
    fn default() -> Self {
        PasswordPolicy {
            minimum_length: 6,
            require_symbols: false,
            require_numbers: false,
            require_uppercase: false,
            require_lowercase: false,
            allow_users_to_change: false,
            max_age_days: None,
            reuse_prevention: None,
            hard_expiry: None,
        }
    }
}

/// A virtual MFA device. The seed is sealed under `master.key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualMfa {
    pub serial: String,
    pub sealed_seed: SecretKey,
    pub created: Epoch,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub enabled: Option<Epoch>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Step of the first code of the last accepted pair: a later pair
    /// must start after it, so a pair is not accepted twice.
    #[serde(default)]
    pub last_step: u64,
}

/// A generated credential report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialReport {
    pub generated: Epoch,
    pub csv: String,
}

/// Governance records of one account, kept in its account record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountGovernance {
    #[serde(default)]
    pub password_policy: Option<PasswordPolicy>,
    /// By serial number (the device ARN).
    #[serde(default)]
    pub mfa: BTreeMap<String, VirtualMfa>,
    #[serde(default)]
    pub credential_report: Option<CredentialReport>,
}

/// A report younger than this is returned as is (AWS: four hours).
pub const REPORT_FRESH_SECS: i64 = 4 * 3600;

/// What GenerateCredentialReport answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    Started,
    Complete,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Started => "STARTED",
            ReportState::Complete => "COMPLETE",
        }
    }
}

// ------------------------------------------------------------ passwords

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

/// Hash a password with a fresh salt.
pub fn hash_password(password: &str) -> SecretKey {
    use base64::Engine;
    let salt = crypto::random_bytes::<16>();
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, PBKDF2_ROUNDS, &mut out);
    SecretKey::new(format!(
        "pbkdf2-sha256${PBKDF2_ROUNDS}${}${}",
        b64().encode(salt),
        b64().encode(out)
    ))
}

/// Whether `password` matches a stored hash (constant-time compare).
pub fn verify_password(password: &str, stored: &SecretKey) -> bool {
    use base64::Engine;
    let mut parts = stored.expose().split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(hash)) = (
        rounds.parse::<u32>(),
        b64().decode(salt),
        b64().decode(hash),
    ) else {
        return false;
    };
    let mut out = vec![0u8; hash.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, rounds, &mut out);
    ct_eq(&out, &hash)
}

const SYMBOLS: &str = "!@#$%^&*()_+-=[]{}|'";

/// Check a password against the account policy, or without one AWS's
/// default: at least 8 characters of at least three of uppercase,
/// lowercase, digits and symbols.
pub fn check_password(policy: Option<&PasswordPolicy>, password: &str) -> Result<()> {
    let violation = |m: &str| {
        Err(ServiceError::PasswordPolicyViolation(format!(
            "Password should {m}"
        )))
    };
    let Some(p) = policy else {
        let kinds = [
            password.chars().any(|c| c.is_ascii_uppercase()),
            password.chars().any(|c| c.is_ascii_lowercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_ascii_alphanumeric()),
        ];
        if password.chars().count() < 8 || kinds.iter().filter(|k| **k).count() < 3 {
            return violation(
                "have at least 8 characters and three of uppercase, lowercase, numbers and symbols",
            );
        }
        return Ok(());
    };
    if password.chars().count() < p.minimum_length as usize {
        return violation(&format!("have at least {} characters", p.minimum_length));
    }
    if p.require_symbols && !password.chars().any(|c| SYMBOLS.contains(c)) {
        return violation("have at least one symbol");
    }
    if p.require_numbers && !password.chars().any(|c| c.is_ascii_digit()) {
        return violation("have at least one number");
    }
    if p.require_uppercase && !password.chars().any(|c| c.is_ascii_uppercase()) {
        return violation("have at least one uppercase letter");
    }
    if p.require_lowercase && !password.chars().any(|c| c.is_ascii_lowercase()) {
        return violation("have at least one lowercase letter");
    }
    Ok(())
}

// ------------------------------------------------------------------ TOTP

/// RFC 4648 base32 (no padding), as AWS's `Base32StringSeed`.
pub fn base32(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                A.get(((buf >> bits) & 31) as usize)
                    .copied()
                    .unwrap_or(b'A'),
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            A.get(((buf << (5 - bits)) & 31) as usize)
                .copied()
                .unwrap_or(b'A'),
        ));
    }
    out
}

/// RFC 6238 TOTP: HMAC-SHA-1, 6 digits, for one 30-second step.
pub fn totp(seed: &[u8], step: u64) -> String {
    let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(seed) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h.last().copied().unwrap_or(0) & 0x0f);
    let word = h
        .get(off..off + 4)
        .map(|b| b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)))
        .unwrap_or(0)
        & 0x7fff_ffff;
    format!("{:06}", word % 1_000_000)
}

/// The step of two consecutive codes, searched around `now` (a few
/// steps back, one ahead, for clock skew), after `after`.
pub fn match_codes(seed: &[u8], code1: &str, code2: &str, now: i64, after: u64) -> Option<u64> {
    let cur = u64::try_from(now).ok()? / 30;
    (cur.saturating_sub(4)..=cur + 1).find(|&s| {
        s > after
            && ct_eq(totp(seed, s).as_bytes(), code1.as_bytes())
            && ct_eq(totp(seed, s + 1).as_bytes(), code2.as_bytes())
    })
}

// ----------------------------------------------------------- validation

fn invalid_code() -> ServiceError {
    ServiceError::InvalidAuthenticationCode("Authentication code for device is not valid.".into())
}

/// AWS's account alias rule: 3–63 of `a-z0-9-`, starting and ending
/// with a letter or digit, no `--`.
pub fn valid_alias(a: &str) -> bool {
    let b = a.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
        && !a.contains("--")
}

fn account_of(st: &State, account: &str) -> Result<Account> {
    st.accounts
        .get(account)
        .cloned()
        .ok_or_else(|| ServiceError::NoSuchEntity(format!("account {account} not found")))
}

fn user_of(st: &State, account: &str, name: &str) -> Result<User> {
    st.user(account, name).cloned().ok_or_else(|| {
        ServiceError::NoSuchEntity(format!("The user with name {name} cannot be found."))
    })
}

fn no_profile(name: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("Login Profile for User {name} cannot be found."))
}

fn put_account(a: Account) -> Change {
    Change::Put(Entity::Account(a))
}

fn put_user(u: User) -> Change {
    Change::Put(Entity::User(u))
}

impl Keycard {
    // ------------------------------------------------------ login profiles

    /// The account's password policy, if one is set.
    pub fn password_policy(&self, account: &str) -> Option<PasswordPolicy> {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.governance.password_policy.clone())
    }

    pub async fn create_login_profile(
        &self,
        account: &str,
        user: &str,
        password: &str,
        reset_required: bool,
    ) -> Result<(User, LoginProfile)> {
        check_password(self.password_policy(account).as_ref(), password)?;
        let hash = hash_blocking(password).await?;
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            if u.login_profile.is_some() {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "Login Profile for user {} already exists.",
                    u.name
                )));
            }
            let t = now();
            let lp = LoginProfile {
                created: t,
                hash: hash.clone(),
                reset_required,
                changed: t,
                previous: Vec::new(),
                last_used: None,
            };
            u.login_profile = Some(lp.clone());
            Ok((vec![put_user(u.clone())], (u, lp)))
        })
        .await
    }

    pub fn get_login_profile(&self, account: &str, user: &str) -> Result<(User, LoginProfile)> {
        let st = self.state();
        let u = user_of(&st, account, user)?;
        let lp = u.login_profile.clone().ok_or_else(|| no_profile(&u.name))?;
        Ok((u, lp))
    }

    /// UpdateLoginProfile: a new password and/or the reset flag.
    pub async fn update_login_profile(
        &self,
        account: &str,
        user: &str,
        password: Option<&str>,
        reset_required: Option<bool>,
    ) -> Result<()> {
        let hash = match password {
            Some(p) => {
                check_password(self.password_policy(account).as_ref(), p)?;
                Some(hash_blocking(p).await?)
            }
            None => None,
        };
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            let name = u.name.clone();
            let lp = u.login_profile.as_mut().ok_or_else(|| no_profile(&name))?;
            if let Some(h) = hash.clone() {
                set_password(lp, h, None);
            }
            if let Some(r) = reset_required {
                lp.reset_required = r;
            }
            Ok((vec![put_user(u)], ()))
        })
        .await
    }

    pub async fn delete_login_profile(&self, account: &str, user: &str) -> Result<()> {
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            if u.login_profile.take().is_none() {
                return Err(no_profile(&u.name));
            }
            Ok((vec![put_user(u)], ()))
        })
        .await
    }

    /// ChangePassword by the user itself: the old password must match,
    /// the new one must satisfy the policy and not reuse recent ones.
    /// Clears `PasswordResetRequired`.
    pub async fn change_password(
        &self,
        account: &str,
        user: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        let (_, lp) = self.get_login_profile(account, user)?;
        let policy = self.password_policy(account);
        if policy
            .as_ref()
            .is_some_and(|p| !p.allow_users_to_change && !lp.reset_required)
        {
            return Err(ServiceError::AccessDenied(
                "The account password policy does not allow users to change their password.".into(),
            ));
        }
        let (old_s, new_s, prev) = (old.to_string(), new.to_string(), lp.clone());
        let (old_ok, reused) = tokio::task::spawn_blocking(move || {
            let old_ok = verify_password(&old_s, &prev.hash);
            let reuse = policy
                .as_ref()
                .and_then(|p| p.reuse_prevention)
                .unwrap_or(0) as usize;
            let reused = std::iter::once(&prev.hash)
                .chain(prev.previous.iter())
                .take(reuse)
                .any(|h| verify_password(&new_s, h));
            (old_ok, reused)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if !old_ok {
            // What AWS answers for a wrong old password.
            return Err(ServiceError::AccessDenied("Failed authentication".into()));
        }
        check_password(self.password_policy(account).as_ref(), new)?;
        if reused {
            return Err(ServiceError::PasswordPolicyViolation(
                "Password should not be one of your previous passwords.".into(),
            ));
        }
        let hash = hash_blocking(new).await?;
        let keep = self
            .password_policy(account)
            .and_then(|p| p.reuse_prevention)
            .unwrap_or(0) as usize;
        self.mutate(|st| {
            let mut u = user_of(st, account, user)?;
            let name = u.name.clone();
            let lp = u.login_profile.as_mut().ok_or_else(|| no_profile(&name))?;
            set_password(lp, hash.clone(), Some(keep));
            lp.reset_required = false;
            Ok((vec![put_user(u)], ()))
        })
        .await
    }

    pub async fn update_password_policy(&self, account: &str, p: PasswordPolicy) -> Result<()> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            a.governance.password_policy = Some(p.clone());
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    pub fn get_password_policy(&self, account: &str) -> Result<PasswordPolicy> {
        self.password_policy(account).ok_or_else(|| {
            ServiceError::NoSuchEntity(format!(
                "The Password Policy with domain name {account} cannot be found."
            ))
        })
    }

    pub async fn delete_password_policy(&self, account: &str) -> Result<()> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            if a.governance.password_policy.take().is_none() {
                return Err(ServiceError::NoSuchEntity(format!(
                    "The Password Policy with domain name {account} cannot be found."
                )));
            }
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    // ---------------------------------------------------------------- MFA

    /// CreateVirtualMFADevice: (device, clear base32 seed).
    pub async fn create_virtual_mfa(
        &self,
        account: &str,
        path: &str,
        name: &str,
        tags: Vec<Tag>,
    ) -> Result<(VirtualMfa, SecretKey)> {
        let serial = format!("arn:aws:iam::{account}:mfa{path}{name}");
        let seed = SecretKey::new(base32(&crypto::random_bytes::<40>()));
        let sealed = SecretKey::new(crypto::seal_secret(self.master(), seed.expose(), &serial));
        let dev = self
            .mutate(|st| {
                let mut a = account_of(st, account)?;
                let taken = a.governance.mfa.values().any(|d| {
                    d.serial
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                });
                if taken {
                    return Err(ServiceError::EntityAlreadyExists(
                        "MFADevice entity at the same path and name already exists.".into(),
                    ));
                }
                let dev = VirtualMfa {
                    serial: serial.clone(),
                    sealed_seed: sealed.clone(),
                    created: now(),
                    user: None,
                    enabled: None,
                    tags: tags.clone(),
                    last_step: 0,
                };
                a.governance.mfa.insert(serial.clone(), dev.clone());
                Ok((vec![put_account(a)], dev))
            })
            .await?;
        Ok((dev, seed))
    }

    pub(crate) fn seed_of(&self, dev: &VirtualMfa) -> Result<Vec<u8>> {
        let b32 = crypto::open_secret(self.master(), dev.sealed_seed.expose(), &dev.serial)?;
        base32_decode(&b32).ok_or_else(|| ServiceError::Internal("MFA seed is corrupt".into()))
    }

    /// EnableMFADevice (or, with `resync`, ResyncMFADevice): two
    /// consecutive codes from the device.
    pub async fn enable_mfa(
        &self,
        account: &str,
        user: &str,
        serial: &str,
        codes: (&str, &str),
        resync: bool,
    ) -> Result<()> {
        let dev = {
            let st = self.state();
            let u = user_of(&st, account, user)?;
            let dev = device(&st, account, serial)?;
            if resync {
                if dev.user.as_deref() != Some(u.name.as_str()) {
                    return Err(no_device(serial));
                }
            } else if dev.user.is_some() {
                return Err(ServiceError::EntityAlreadyExists(
                    "MFA Device is already in use.".into(),
                ));
            } else if mfa_of_user(&st, account, &u.name).is_some() {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for UsersPerMFADevice: 1".into(),
                ));
            }
            dev
        };
        let seed = self.seed_of(&dev)?;
        let step =
            match_codes(&seed, codes.0, codes.1, now(), dev.last_step).ok_or_else(invalid_code)?;
        self.mutate(|st| {
            let u = user_of(st, account, user)?;
            let mut a = account_of(st, account)?;
            let d = a
                .governance
                .mfa
                .get_mut(&dev.serial)
                .ok_or_else(|| no_device(serial))?;
            d.last_step = step;
            if !resync {
                d.user = Some(u.name.clone());
                d.enabled = Some(now());
            }
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    pub async fn deactivate_mfa(&self, account: &str, user: &str, serial: &str) -> Result<()> {
        self.mutate(|st| {
            let u = user_of(st, account, user)?;
            let mut a = account_of(st, account)?;
            let d = a
                .governance
                .mfa
                .get_mut(serial)
                .filter(|d| d.user.as_deref() == Some(u.name.as_str()))
                .ok_or_else(|| no_device(serial))?;
            d.user = None;
            d.enabled = None;
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    pub async fn delete_virtual_mfa(&self, account: &str, serial: &str) -> Result<()> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            let d = a
                .governance
                .mfa
                .get(serial)
                .ok_or_else(|| no_device(serial))?;
            if d.user.is_some() {
                return Err(ServiceError::DeleteConflict(
                    "MFA device is still in use.".into(),
                ));
            }
            a.governance.mfa.remove(serial);
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    /// ListVirtualMFADevices: `assigned` None for `Any`.
    pub fn list_virtual_mfa(
        &self,
        account: &str,
        assigned: Option<bool>,
    ) -> Vec<(VirtualMfa, Option<User>)> {
        let st = self.state();
        let Some(a) = st.accounts.get(account) else {
            return Vec::new();
        };
        a.governance
            .mfa
            .values()
            .filter(|d| assigned.is_none_or(|x| x == d.user.is_some()))
            .map(|d| {
                let u = d.user.as_ref().and_then(|n| st.user(account, n).cloned());
                (d.clone(), u)
            })
            .collect()
    }

    /// ListMFADevices for a user: (user name, serial, enable date).
    pub fn list_mfa(&self, account: &str, user: &str) -> Result<Vec<(String, String, Epoch)>> {
        let st = self.state();
        let u = user_of(&st, account, user)?;
        Ok(mfa_of_user(&st, account, &u.name)
            .map(|d| {
                (
                    u.name.clone(),
                    d.serial.clone(),
                    d.enabled.unwrap_or(d.created),
                )
            })
            .into_iter()
            .collect())
    }

    // ------------------------------------------------------------- alias

    pub async fn create_account_alias(&self, account: &str, alias: &str) -> Result<()> {
        if !valid_alias(alias) {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{alias}' at 'accountAlias' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-z0-9]([a-z0-9]|-(?!-)){{1,61}}[a-z0-9]$"
            )));
        }
        self.mutate(|st| {
            // Aliases are unique across accounts (and setting the same
            // one again is a conflict too).
            if st
                .accounts
                .values()
                .any(|a| a.alias.as_deref() == Some(alias))
            {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "The account alias {alias} already exists."
                )));
            }
            // One alias per account: a new one replaces the old.
            let mut a = account_of(st, account)?;
            a.alias = Some(alias.to_string());
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    pub async fn delete_account_alias(&self, account: &str, alias: &str) -> Result<()> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            if a.alias.as_deref() != Some(alias) {
                return Err(ServiceError::NoSuchEntity(format!(
                    "The account alias {alias} cannot be found."
                )));
            }
            a.alias = None;
            Ok((vec![put_account(a)], ()))
        })
        .await
    }

    pub fn account_aliases(&self, account: &str) -> Vec<String> {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.alias.clone())
            .into_iter()
            .collect()
    }

    // -------------------------------------------------- credential report

    /// GenerateCredentialReport: a fresh report stays; otherwise a new one
    /// is built now (keycard builds it at once, and answers `STARTED` the
    /// first time as AWS does, `COMPLETE` while it is fresh).
    pub async fn generate_credential_report(&self, account: &str) -> Result<ReportState> {
        let t = now();
        let csv = self.credential_report_csv(account);
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            if a.governance
                .credential_report
                .as_ref()
                .is_some_and(|r| t - r.generated < REPORT_FRESH_SECS)
            {
                return Ok((Vec::new(), ReportState::Complete));
            }
            a.governance.credential_report = Some(CredentialReport {
                generated: t,
                csv: csv.clone(),
            });
            Ok((vec![put_account(a)], ReportState::Started))
        })
        .await
    }

    /// GetCredentialReport: the stored report, `ReportNotPresent` before
    /// any, `ReportExpired` once older than four hours.
    pub fn get_credential_report(&self, account: &str) -> Result<CredentialReport> {
        let st = self.state();
        let r = st
            .accounts
            .get(account)
            .and_then(|a| a.governance.credential_report.clone())
            .ok_or_else(|| ServiceError::ReportNotPresent(
                "Credential report not present. Use GenerateCredentialReport to generate a report.".into(),
            ))?;
        if now() - r.generated >= REPORT_FRESH_SECS {
            return Err(ServiceError::ReportExpired(
                "Credential report is expired. Use GenerateCredentialReport to generate a new report.".into(),
            ));
        }
        Ok(r)
    }

    /// The credential report's CSV for the account as it is now.
    pub fn credential_report_csv(&self, account: &str) -> String {
        let st = self.state();
        let mut out = String::from(REPORT_HEADER);
        out.push('\n');
        let Some(a) = st.accounts.get(account) else {
            return out;
        };
        let keys = |user: Option<&str>| -> Vec<AccessKey> {
            let mut k: Vec<AccessKey> = st
                .access_keys
                .values()
                .filter(|k| k.account == account && k.user.as_deref() == user)
                .cloned()
                .collect();
            k.sort_by(|x, y| (x.created, &x.id).cmp(&(y.created, &y.id)));
            k
        };
        let mut root = vec![
            "<root_account>".to_string(),
            format!("arn:aws:iam::{account}:root"),
            report_time(a.created),
            "not_supported".into(),
            "no_information".into(),
            "not_supported".into(),
            "not_supported".into(),
            "false".into(),
        ];
        root.extend(key_columns(&keys(None)));
        root.extend(cert_columns(&[]));
        out.push_str(&root.join(","));
        out.push('\n');
        let policy = a.governance.password_policy.as_ref();
        let mut users: Vec<&User> = st.users.values().filter(|u| u.account == account).collect();
        users.sort_by(|x, y| x.name.cmp(&y.name));
        for u in users {
            let mut row = vec![u.name.clone(), u.arn(), report_time(u.created)];
            row.extend(password_columns(u.login_profile.as_ref(), policy));
            row.push(bool_col(mfa_of_user(&st, account, &u.name).is_some()));
            row.extend(key_columns(&keys(Some(&u.name))));
            row.extend(cert_columns(&u.creds.signing_certs));
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }
}

/// The credential report's columns, in AWS's order.
pub const REPORT_HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

/// ISO 8601 with an explicit offset, as the report writes times.
pub fn report_time(epoch: Epoch) -> String {
    let z = crate::sts::iso8601(epoch);
    match z.strip_suffix('Z') {
        Some(s) => format!("{s}+00:00"),
        None => z,
    }
}

fn bool_col(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

fn password_columns(lp: Option<&LoginProfile>, policy: Option<&PasswordPolicy>) -> Vec<String> {
    let Some(lp) = lp else {
        return vec!["false".into(), "N/A".into(), "N/A".into(), "N/A".into()];
    };
    let next = match policy.and_then(|p| p.max_age_days) {
        Some(d) => report_time(lp.changed + i64::from(d) * 86_400),
        None => "N/A".into(),
    };
    vec![
        "true".into(),
        lp.last_used
            .map(report_time)
            .unwrap_or_else(|| "no_information".into()),
        report_time(lp.changed),
        next,
    ]
}

fn key_columns(keys: &[AccessKey]) -> Vec<String> {
    let mut cols = Vec::new();
    for i in 0..2 {
        match keys.get(i) {
            Some(k) => {
                cols.push(bool_col(k.status == KeyStatus::Active));
                cols.push(report_time(k.created));
                match &k.last_used {
                    Some(l) => {
                        cols.push(report_time(l.date));
                        cols.push(l.region.clone());
                        cols.push(l.service.clone());
                    }
                    None => cols.extend(["N/A", "N/A", "N/A"].map(String::from)),
                }
            }
            None => cols.extend(["false", "N/A", "N/A", "N/A", "N/A"].map(String::from)),
        }
    }
    cols
}

/// `cert_N_active`, `cert_N_last_rotated` for a user's signing certificates.
fn cert_columns(certs: &[crate::iam_creds::SigningCert]) -> Vec<String> {
    let mut cols = Vec::new();
    for i in 0..2 {
        match certs.get(i) {
            Some(c) => {
                cols.push(bool_col(c.status == KeyStatus::Active));
                cols.push(report_time(c.uploaded));
            }
            None => cols.extend(["false", "N/A"].map(String::from)),
        }
    }
    cols
}

fn set_password(lp: &mut LoginProfile, hash: SecretKey, keep: Option<usize>) {
    let old = std::mem::replace(&mut lp.hash, hash);
    lp.previous.insert(0, old);
    lp.previous.truncate(keep.unwrap_or(24).min(24));
    lp.changed = now();
}

pub(crate) async fn hash_blocking(password: &str) -> Result<SecretKey> {
    let p = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&p))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

fn no_device(serial: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!(
        "MFA Device with serial number {serial} cannot be found."
    ))
}

fn device(st: &State, account: &str, serial: &str) -> Result<VirtualMfa> {
    st.accounts
        .get(account)
        .and_then(|a| a.governance.mfa.get(serial).cloned())
        .ok_or_else(|| no_device(serial))
}

/// The MFA device enabled for a user, if any.
pub fn mfa_of_user<'a>(st: &'a State, account: &str, user: &str) -> Option<&'a VirtualMfa> {
    st.accounts.get(account)?.governance.mfa.values().find(|d| {
        d.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(user))
    })
}

/// The account record with the user's MFA device following a rename
/// (`None` when the user has none).
pub fn rename_mfa_user(st: &State, account: &str, old: &str, new: &str) -> Option<Change> {
    let mut a = st.accounts.get(account)?.clone();
    let d = a.governance.mfa.values_mut().find(|d| {
        d.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(old))
    })?;
    d.user = Some(new.to_string());
    Some(put_account(a))
}

/// RFC 4648 base32 (a device seed, as `Base32StringSeed` gives it) back to bytes.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let (mut buf, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1 seed, last 6 digits.
        let seed = b"12345678901234567890";
        assert_eq!(totp(seed, 59 / 30), "287082");
        assert_eq!(totp(seed, 1_111_111_109 / 30), "081804");
        assert_eq!(totp(seed, 2_000_000_000 / 30), "279037");
    }

    #[test]
    fn two_consecutive_codes_are_needed() {
        let seed = b"12345678901234567890";
        let now = 1_111_111_109;
        let s = now as u64 / 30;
        let (a, b) = (totp(seed, s - 1), totp(seed, s));
        assert_eq!(match_codes(seed, &a, &b, now, 0), Some(s - 1));
        assert_eq!(match_codes(seed, &b, &a, now, 0), None);
        assert_eq!(match_codes(seed, &a, &b, now, s - 1), None, "no replay");
    }

    #[test]
    fn base32_round_trips() {
        let data = [0u8, 1, 2, 250, 251, 7, 9, 200, 33, 44];
        assert_eq!(base32_decode(&base32(&data)), Some(data.to_vec()));
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("Correct-Horse-9");
        assert!(verify_password("Correct-Horse-9", &h));
        assert!(!verify_password("correct-horse-9", &h));
        assert!(!format!("{h:?}").contains("pbkdf2"));
    }

    #[test]
    fn policy_rules() {
        let p = PasswordPolicy {
            minimum_length: 10,
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
            ..PasswordPolicy::default()
        };
        assert!(check_password(Some(&p), "Short1!").is_err());
        assert!(check_password(Some(&p), "longenough1!").is_err());
        assert!(check_password(Some(&p), "LongEnough1!").is_ok());
        assert!(check_password(None, "Abcdefg1").is_ok());
        assert!(check_password(None, "abcdefgh1").is_err());
    }

    #[test]
    fn alias_rules() {
        assert!(valid_alias("my-corp-1"));
        assert!(!valid_alias("My-corp"));
        assert!(!valid_alias("a--b"));
        assert!(!valid_alias("-ab"));
        assert!(!valid_alias("ab"));
    }
}
