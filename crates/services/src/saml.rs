//! IAM SAML providers: the records (metadata document, tags), kept in
//! their account's record, and `AssumeRoleWithSAML`, which trusts an
//! assertion only once its signature verifies with the provider's
//! metadata certificates (saml_assertion.rs, xmldsig.rs).

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServiceError};
use crate::model::{Account, Change, Entity, Epoch, Tag};
use crate::{Keycard, now, validate};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamlProvider {
    pub name: String,
    pub metadata: String,
    pub created: Epoch,
    /// The metadata's `validUntil`, as given (ISO 8601).
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `SAMLProviderUUID`.
    pub uuid: String,
    #[serde(default)]
    pub encryption_mode: Option<String>,
}

pub fn saml_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:saml-provider/{name}")
}

/// `arn:aws:iam::ACCOUNT:saml-provider/NAME` -> (account, name).
pub fn parse_saml_arn(arn: &str) -> Result<(String, String)> {
    let bad = || ServiceError::InvalidInput(format!("ARN {arn} is not valid."));
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(bad)?;
    let (acct, res) = rest.split_once(':').ok_or_else(bad)?;
    let name = res.strip_prefix("saml-provider/").ok_or_else(bad)?;
    validate::account_id(acct).map_err(|_| bad())?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((acct.to_string(), name.to_string()))
}

fn no_provider(arn: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("Manifest not found for arn {arn}"))
}

fn check_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if !(1..=128).contains(&n)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w._-]+"
        )));
    }
    Ok(())
}

/// The model's length bounds and the document: well-formed XML whose root
/// is an `EntityDescriptor` (SAML metadata). Returns its `validUntil`.
fn check_metadata(doc: &str) -> Result<Option<String>> {
    let n = doc.chars().count();
    if !(1000..=10_000_000).contains(&n) {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value at 'sAMLMetadataDocument' failed to satisfy constraint: Member must have length greater than or equal to 1000 (it has {n})"
        )));
    }
    let root = crate::xmltree::parse(doc)
        .ok()
        .filter(|r| r.expanded().1 == "EntityDescriptor")
        .ok_or_else(|| ServiceError::InvalidInput("Could not parse metadata".into()))?;
    Ok(root.attr("validUntil").map(str::to_string))
}

fn check_mode(mode: Option<&str>) -> Result<()> {
    match mode {
        None | Some("Required" | "Allowed") => Ok(()),
        Some(m) => Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{m}' at 'assertionEncryptionMode' failed to satisfy constraint: Member must satisfy enum value set: [Required, Allowed]"
        ))),
    }
}

/// The caller's account record, when the ARN names that account.
fn own_account(
    st: &crate::state::State,
    account: &str,
    of_arn: &str,
    arn: &str,
) -> Result<Account> {
    st.accounts
        .get(account)
        .cloned()
        .filter(|_| of_arn == account)
        .ok_or_else(|| no_provider(arn))
}

fn put(a: Account) -> Vec<Change> {
    vec![Change::Put(Entity::Account(a))]
}

/// The `SAMLProviderUUID`: 22+ of `[A-Z0-9]`.
fn provider_uuid() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase()
}

impl Keycard {
    pub async fn create_saml_provider(
        &self,
        account: &str,
        name: &str,
        metadata: &str,
        tags: Vec<Tag>,
        mode: Option<&str>,
    ) -> Result<(String, SamlProvider)> {
        check_name(name)?;
        let valid_until = check_metadata(metadata)?;
        check_mode(mode)?;
        validate::tags(&tags)?;
        let p = SamlProvider {
            name: name.to_string(),
            metadata: metadata.to_string(),
            created: now(),
            valid_until,
            tags,
            uuid: provider_uuid(),
            encryption_mode: mode.map(str::to_string),
        };
        self.mutate(|st| {
            let mut a = st.accounts.get(account).cloned().ok_or_else(|| {
                ServiceError::NoSuchEntity(format!("account {account} not found"))
            })?;
            if a.federation.saml.contains_key(name) {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "SAMLProvider {name} already exists"
                )));
            }
            if a.federation.saml.len() >= 100 {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for SamlProvidersPerAccount: 100".into(),
                ));
            }
            a.federation.saml.insert(name.to_string(), p.clone());
            Ok((put(a), (saml_arn(account, name), p.clone())))
        })
        .await
    }

    pub fn get_saml_provider(&self, account: &str, arn: &str) -> Result<SamlProvider> {
        let (acct, name) = parse_saml_arn(arn)?;
        self.state()
            .accounts
            .get(account)
            .filter(|_| acct == account)
            .and_then(|a| a.federation.saml.get(&name).cloned())
            .ok_or_else(|| no_provider(arn))
    }

    pub fn list_saml_providers(&self, account: &str) -> Vec<(String, SamlProvider)> {
        self.state()
            .accounts
            .get(account)
            .map(|a| {
                a.federation
                    .saml
                    .iter()
                    .map(|(n, p)| (saml_arn(account, n), p.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Change one provider (metadata, tags, encryption mode).
    pub async fn update_saml_provider(
        &self,
        account: &str,
        arn: &str,
        change: impl Fn(&mut SamlProvider) -> Result<()>,
    ) -> Result<()> {
        let (acct, name) = parse_saml_arn(arn)?;
        self.mutate(|st| {
            let mut a = own_account(st, account, &acct, arn)?;
            let p = a
                .federation
                .saml
                .get_mut(&name)
                .ok_or_else(|| no_provider(arn))?;
            change(p)?;
            Ok((put(a), ()))
        })
        .await
    }

    pub async fn set_saml_metadata(
        &self,
        account: &str,
        arn: &str,
        metadata: Option<&str>,
        mode: Option<&str>,
    ) -> Result<()> {
        let valid = metadata.map(check_metadata).transpose()?;
        check_mode(mode)?;
        self.update_saml_provider(account, arn, |p| {
            if let Some(m) = metadata {
                p.metadata = m.to_string();
                p.valid_until = valid.clone().flatten();
            }
            if let Some(m) = mode {
                p.encryption_mode = Some(m.to_string());
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_saml_provider(&self, account: &str, arn: &str) -> Result<()> {
        let (acct, name) = parse_saml_arn(arn)?;
        self.mutate(|st| {
            let mut a = own_account(st, account, &acct, arn)?;
            if a.federation.saml.remove(&name).is_none() {
                return Err(no_provider(arn));
            }
            Ok((put(a), ()))
        })
        .await
    }

    pub async fn tag_saml_provider(&self, account: &str, arn: &str, tags: Vec<Tag>) -> Result<()> {
        validate::tags(&tags)?;
        self.update_saml_provider(account, arn, |p| {
            crate::federation::merge_tags(&mut p.tags, &tags)
        })
        .await
    }

    pub async fn untag_saml_provider(
        &self,
        account: &str,
        arn: &str,
        keys: Vec<String>,
    ) -> Result<()> {
        self.update_saml_provider(account, arn, |p| {
            p.tags.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_metadata() {
        let arn = saml_arn("123456789012", "Okta");
        assert_eq!(
            parse_saml_arn(&arn).ok(),
            Some(("123456789012".into(), "Okta".into()))
        );
        assert!(parse_saml_arn("arn:aws:iam::123456789012:role/x").is_err());
        assert!(check_metadata("short").is_err());
        let doc = format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" validUntil=\"2030-01-01T00:00:00Z\">{}</md:EntityDescriptor>",
            "x".repeat(1000)
        );
        assert_eq!(
            check_metadata(&doc).ok(),
            Some(Some("2030-01-01T00:00:00Z".into()))
        );
        // Not well-formed (an undeclared prefix): not metadata.
        let undeclared = doc.replace(" xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"", "");
        assert!(check_metadata(&undeclared).is_err());
        assert!(check_name("bad name").is_err());
    }
}

// -------------------------------------------------- AssumeRoleWithSAML

/// What AssumeRoleWithSAML takes.
#[derive(Debug, Clone, Default)]
pub struct SamlInput {
    pub role_arn: String,
    pub principal_arn: String,
    pub assertion: keycard_proto::secret::SecretKey,
    pub duration: Option<i64>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

/// The answer, and the SAML user (the audit event's caller).
#[derive(Debug)]
pub struct SamlAnswer {
    pub assumed: crate::sts::AssumedRole,
    pub assertion: crate::saml_assertion::Assertion,
    pub name_qualifier: String,
    pub caller: crate::auth::Caller,
}

/// `saml:namequalifier`: base64(SHA-1(issuer + account + "/" + provider name)).
pub fn name_qualifier(issuer: &str, account: &str, provider: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let h = sha1::Sha1::digest(format!("{issuer}{account}/{provider}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn saml_denied() -> ServiceError {
    ServiceError::AccessDenied("Not authorized to perform sts:AssumeRoleWithSAML".into())
}

impl Keycard {
    /// AssumeRoleWithSAML: an unsigned call; the signed assertion is the
    /// credential and the role's trust policy the authorization.
    pub async fn assume_role_with_saml(
        &self,
        input: SamlInput,
        request_ctx: &std::sync::Arc<keycard_policy::Context>,
        enforce: bool,
        decided: &mut Vec<crate::auth::Decided>,
    ) -> Result<SamlAnswer> {
        use crate::auth::{Check, ResourcePolicy};
        let packed = crate::sts::session_policies(input.policy.as_deref(), &input.policy_arns)?;
        let (role_account, role_name) =
            crate::sts::parse_role_arn(&input.role_arn).ok_or_else(|| {
                ServiceError::ValidationError(format!("{} is invalid", input.role_arn))
            })?;
        let provider = self
            .get_saml_provider(&role_account, &input.principal_arn)
            .map_err(|_| {
                ServiceError::Modeled(
                    "InvalidIdentityToken",
                    400,
                    "Specified provider doesn't exist".into(),
                )
            })?;
        let a = crate::saml_assertion::read(input.assertion.expose(), &provider.metadata, now())?;
        if !a
            .roles
            .iter()
            .any(|(r, p)| *r == input.role_arn && *p == input.principal_arn)
        {
            return Err(saml_denied());
        }
        let role = self
            .state()
            .role(&role_account, &role_name)
            .cloned()
            .filter(|r| r.arn() == input.role_arn)
            .ok_or_else(saml_denied)?;
        let duration =
            crate::federation::check_duration(input.duration, role.max_session_duration)?;
        let nq = name_qualifier(&a.issuer, &role_account, &provider.name);
        let caller = crate::federation::WebIdentity {
            provider: nq.clone(),
            provider_arn: input.principal_arn.clone(),
            sub: a.subject.clone(),
            aud: a.recipient.clone(),
            saml: true,
        }
        .caller(&role_account);
        let check = Check::new("sts:AssumeRoleWithSAML", input.role_arn.clone())
            .account(role_account.clone())
            .policy(ResourcePolicy::Trust(&role.trust))
            .key("sts:RoleSessionName", a.session_name.clone())
            .key("aws:FederatedProvider", input.principal_arn.clone())
            .key("saml:aud", a.recipient.clone())
            .key("saml:iss", a.issuer.clone())
            .key("saml:sub", a.subject.clone())
            .key("saml:sub_type", a.subject_type.clone())
            .key("saml:namequalifier", nq.clone())
            .key("saml:doc", format!("{role_account}/{}", provider.name));
        let (check, actions) = crate::sts::session_extras(
            check,
            "sts:AssumeRoleWithSAML",
            &a.tags,
            a.source_identity.as_deref(),
        );
        if self
            .decide_each(&caller, request_ctx, check, &actions, enforce, decided)
            .is_some()
        {
            return Err(saml_denied());
        }
        let t = now();
        // The session ends no later than the IdP's SessionNotOnOrAfter.
        let expires = a
            .session_not_on_or_after
            .map_or(t + duration, |s| s.min(t + duration));
        let credentials = self.issue(crate::sts::SessionClaims {
            account: role_account.clone(),
            issued: t,
            expires,
            role: Some(crate::sts::RoleRef::of(&role)),
            session_name: a.session_name.clone(),
            policy: input.policy.clone(),
            policy_arns: input.policy_arns.clone(),
            tags: a.tags.clone(),
            source_identity: a.source_identity.clone(),
            ..crate::sts::SessionClaims::default()
        });
        Ok(SamlAnswer {
            assumed: crate::sts::AssumedRole::of(
                &role,
                &a.session_name,
                credentials,
                packed,
                a.source_identity.clone(),
            ),
            assertion: a,
            name_qualifier: nq,
            caller,
        })
    }
}
