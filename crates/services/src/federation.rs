//! Federation: IAM OpenID Connect providers, STS
//! `AssumeRoleWithWebIdentity`, and keycard as an OIDC issuer for its own
//! workloads (IAM outbound web identity federation and STS
//! `GetWebIdentityToken`). No HTTP here: `server/src/federation.rs`
//! parses and renders.
//!
//! Where a provider's keys come from (keycard's choice, see
//! docs/federation.md): a token whose issuer is keycard's own is verified
//! against keycard's issuer keys; any other provider's JWKS is given by the
//! administrator (`keycard oidc jwks`), kept with the provider record.
//! keycard fetches nothing from the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use keycard_policy::{Context, Principal, PrincipalKind};
use keycard_proto::secret::SecretKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Caller, CallerKind, Check, Decided, ResourcePolicy};
use crate::error::{Result, ServiceError};
use crate::jwt::{IssuerKeys, Jwt};
use crate::model::{Account, Change, Entity, Epoch, Tag};
use crate::state::State;
use crate::sts::{AssumedRole, RoleRef, SessionClaims, parse_role_arn, validate_session_name};
use crate::{Keycard, now, validate};

/// Store meta key of keycard's issuer keys (sealed under the master key).
const ISSUER_KEYS_META: &str = "oidc_issuer_keys";
/// Path under which keycard serves each account's issuer documents.
pub const ISSUER_PATH: &str = "/_keycard/oidc/";
/// Tolerated clock skew for `nbf` / `iat`.
const SKEW: i64 = 300;

/// The federation records of one account, kept in its account record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountFederation {
    /// By URL without the scheme (`host/path`), as the ARN names it.
    #[serde(default)]
    pub oidc: BTreeMap<String, OidcProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Outbound>,
    /// SAML providers by name (saml.rs).
    #[serde(default)]
    pub saml: BTreeMap<String, crate::saml::SamlProvider>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcProvider {
    /// `host/path`, without `https://`.
    pub url: String,
    #[serde(default)]
    pub client_ids: Vec<String>,
    #[serde(default)]
    pub thumbprints: Vec<String>,
    pub created: Epoch,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// keycard extension: the provider's JWKS, set by the administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
}

/// IAM outbound web identity federation: the account's issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbound {
    /// `https://HOST/_keycard/oidc/ID`; kept when disabled, so enabling
    /// again keeps the issuer relying parties registered.
    pub issuer: String,
    pub enabled: bool,
}

/// Who presented a web identity token (the caller of
/// AssumeRoleWithWebIdentity once the token is verified).
#[derive(Debug, Clone)]
pub struct WebIdentity {
    /// `host/path` of the provider.
    pub provider: String,
    pub provider_arn: String,
    pub sub: String,
    pub aud: String,
    /// A SAML user (AssumeRoleWithSAML): `provider` is then the name
    /// qualifier, as CloudTrail's `identityProvider` shows it.
    pub saml: bool,
}

impl WebIdentity {
    /// The caller the trust policy is decided for: a federated principal
    /// named by the provider's ARN, in the role's account.
    pub fn caller(self, account: &str) -> Caller {
        Caller {
            principal: Principal {
                arn: self.provider_arn.clone(),
                account: account.to_string(),
                kind: PrincipalKind::FederatedUser,
            },
            account: account.to_string(),
            access_key_id: String::new(),
            kind: CallerKind::WebIdentity(Arc::new(self)),
        }
    }
}

pub fn oidc_arn(account: &str, url: &str) -> String {
    format!("arn:aws:iam::{account}:oidc-provider/{url}")
}

/// `arn:aws:iam::ACCOUNT:oidc-provider/URL` -> (account, url).
pub fn parse_oidc_arn(arn: &str) -> Result<(String, String)> {
    let bad = || ServiceError::InvalidInput(format!("ARN {arn} is not valid."));
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(bad)?;
    let (acct, res) = rest.split_once(':').ok_or_else(bad)?;
    let url = res.strip_prefix("oidc-provider/").ok_or_else(bad)?;
    validate::account_id(acct).map_err(|_| bad())?;
    if url.is_empty() {
        return Err(bad());
    }
    Ok((acct.to_string(), url.to_string()))
}

fn no_provider(arn: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("OpenIDConnect provider not found for arn {arn}"))
}

/// AWS's rules for a provider URL: `https://`, at most 255 characters, no
/// query or fragment. Returns `host/path` (no trailing slash).
pub fn provider_url(url: &str) -> Result<String> {
    let invalid = || ServiceError::InvalidInput("Invalid Open Id Connect Provider URL".into());
    if url.is_empty() || url.chars().count() > 255 {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{url}' at 'url' failed to satisfy constraint: Member must have length less than or equal to 255"
        )));
    }
    let rest = url.strip_prefix("https://").ok_or_else(invalid)?;
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty()
        || rest.contains(['?', '#', ' '])
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(invalid());
    }
    Ok(rest.to_string())
}

fn check_client_id(id: &str) -> Result<()> {
    if id.is_empty() || id.chars().count() > 255 {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{id}' at 'clientID' failed to satisfy constraint: Member must have length less than or equal to 255"
        )));
    }
    Ok(())
}

fn check_thumbprints(list: &[String]) -> Result<()> {
    if list.len() > 5 {
        return Err(ServiceError::LimitExceeded(
            "Thumbprint list must contain fewer than 5 entries.".into(),
        ));
    }
    for t in list {
        if t.chars().count() != 40 {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '[{t}]' at 'thumbprintList' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 40, Member must have length greater than or equal to 40]"
            )));
        }
    }
    Ok(())
}

/// Add or replace tags by key; the result must stay within AWS's limits.
pub fn merge_tags(list: &mut Vec<Tag>, tags: &[Tag]) -> Result<()> {
    for t in tags {
        match list.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value.clone(),
            None => list.push(t.clone()),
        }
    }
    validate::tags(list)
}

fn account_of(st: &State, account: &str) -> Result<Account> {
    st.accounts
        .get(account)
        .cloned()
        .ok_or_else(|| ServiceError::NoSuchEntity(format!("account {account} not found")))
}

fn put(a: Account) -> Vec<Change> {
    vec![Change::Put(Entity::Account(a))]
}

/// What CreateOpenIDConnectProvider takes.
#[derive(Debug, Clone, Default)]
pub struct NewOidcProvider {
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: Vec<Tag>,
}

impl Keycard {
    // ------------------------------------------------------ OIDC providers

    pub async fn create_oidc_provider(
        &self,
        account: &str,
        input: NewOidcProvider,
    ) -> Result<(String, OidcProvider)> {
        let url = provider_url(&input.url)?;
        for c in &input.client_ids {
            check_client_id(c)?;
        }
        if input.client_ids.len() > 100 {
            return Err(ServiceError::LimitExceeded(
                "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100".into(),
            ));
        }
        check_thumbprints(&input.thumbprints)?;
        validate::tags(&input.tags)?;
        let mut client_ids: Vec<String> = Vec::new();
        for c in input.client_ids {
            if !client_ids.contains(&c) {
                client_ids.push(c);
            }
        }
        let p = OidcProvider {
            url: url.clone(),
            client_ids,
            thumbprints: input.thumbprints,
            created: now(),
            tags: input.tags,
            jwks: None,
        };
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            if a.federation.oidc.contains_key(&url) {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "Provider with url https://{url} already exists."
                )));
            }
            if a.federation.oidc.len() >= 100 {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for OpenIdConnectProvidersPerAccount: 100".into(),
                ));
            }
            a.federation.oidc.insert(url.clone(), p.clone());
            Ok((put(a), (oidc_arn(account, &url), p.clone())))
        })
        .await
    }

    /// A provider of the caller's account by ARN.
    pub fn get_oidc_provider(&self, account: &str, arn: &str) -> Result<OidcProvider> {
        let (acct, url) = parse_oidc_arn(arn)?;
        if acct != account {
            return Err(no_provider(arn));
        }
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.federation.oidc.get(&url).cloned())
            .ok_or_else(|| no_provider(arn))
    }

    pub fn list_oidc_providers(&self, account: &str) -> Vec<(String, OidcProvider)> {
        self.state()
            .accounts
            .get(account)
            .map(|a| {
                a.federation
                    .oidc
                    .iter()
                    .map(|(u, p)| (oidc_arn(account, u), p.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn delete_oidc_provider(&self, account: &str, arn: &str) -> Result<()> {
        let (acct, url) = parse_oidc_arn(arn)?;
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            if acct != account || a.federation.oidc.remove(&url).is_none() {
                return Err(no_provider(arn));
            }
            Ok((put(a), ()))
        })
        .await
    }

    /// Change one provider (client ids, thumbprints, tags, JWKS).
    pub async fn update_oidc_provider(
        &self,
        account: &str,
        arn: &str,
        change: impl Fn(&mut OidcProvider) -> Result<()>,
    ) -> Result<()> {
        let (acct, url) = parse_oidc_arn(arn)?;
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            let p = a
                .federation
                .oidc
                .get_mut(&url)
                .filter(|_| acct == account)
                .ok_or_else(|| no_provider(arn))?;
            change(p)?;
            Ok((put(a), ()))
        })
        .await
    }

    pub async fn add_oidc_client_id(&self, account: &str, arn: &str, id: &str) -> Result<()> {
        check_client_id(id)?;
        self.update_oidc_provider(account, arn, |p| {
            if !p.client_ids.iter().any(|c| c == id) {
                if p.client_ids.len() >= 100 {
                    return Err(ServiceError::LimitExceeded(
                        "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100".into(),
                    ));
                }
                p.client_ids.push(id.to_string());
            }
            Ok(())
        })
        .await
    }

    /// Removing an id the provider doesn't have succeeds, as in AWS.
    pub async fn remove_oidc_client_id(&self, account: &str, arn: &str, id: &str) -> Result<()> {
        check_client_id(id)?;
        self.update_oidc_provider(account, arn, |p| {
            p.client_ids.retain(|c| c != id);
            Ok(())
        })
        .await
    }

    pub async fn update_oidc_thumbprints(
        &self,
        account: &str,
        arn: &str,
        list: Vec<String>,
    ) -> Result<()> {
        check_thumbprints(&list)?;
        self.update_oidc_provider(account, arn, |p| {
            p.thumbprints = list.clone();
            Ok(())
        })
        .await
    }

    pub async fn tag_oidc_provider(&self, account: &str, arn: &str, tags: Vec<Tag>) -> Result<()> {
        validate::tags(&tags)?;
        self.update_oidc_provider(account, arn, |p| merge_tags(&mut p.tags, &tags))
            .await
    }

    pub async fn untag_oidc_provider(
        &self,
        account: &str,
        arn: &str,
        keys: Vec<String>,
    ) -> Result<()> {
        self.update_oidc_provider(account, arn, |p| {
            p.tags.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
        .await
    }

    /// keycard extension: the JWKS a provider's tokens are verified with.
    pub async fn set_oidc_jwks(&self, account: &str, arn: &str, jwks: &str) -> Result<usize> {
        let v: Value = serde_json::from_str(jwks)
            .map_err(|e| ServiceError::InvalidInput(format!("JWKS is not JSON: {e}")))?;
        let n = v
            .get("keys")
            .and_then(Value::as_array)
            .map(Vec::len)
            .filter(|n| *n > 0)
            .ok_or_else(|| ServiceError::InvalidInput("JWKS has no \"keys\"".into()))?;
        let text = v.to_string();
        self.update_oidc_provider(account, arn, |p| {
            p.jwks = Some(text.clone());
            Ok(())
        })
        .await?;
        Ok(n)
    }

    // ---------------------------------------------------- issuer keys

    /// keycard's issuer keys: from memory, else the store, else made now
    /// and stored (sealed under the master key).
    pub async fn issuer_keys(&self) -> Result<Arc<IssuerKeys>> {
        if let Some(k) = self.cached_issuer_keys() {
            return Ok(k);
        }
        if let Some(k) = self.load_issuer_keys().await? {
            return Ok(k);
        }
        let (keys, bytes) = tokio::task::spawn_blocking(IssuerKeys::generate)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .ok_or_else(|| ServiceError::Internal("issuer key generation failed".into()))?;
        let sealed = self.master().seal(&bytes, ISSUER_KEYS_META.as_bytes());
        self.store().put_meta(ISSUER_KEYS_META, &sealed).await?;
        let keys = Arc::new(keys);
        *self.issuer_keys.write().unwrap_or_else(|e| e.into_inner()) = Some(keys.clone());
        Ok(keys)
    }

    fn cached_issuer_keys(&self) -> Option<Arc<IssuerKeys>> {
        self.issuer_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the keys from the store (another node made them).
    async fn load_issuer_keys(&self) -> Result<Option<Arc<IssuerKeys>>> {
        let Some(sealed) = self.store().get_meta(ISSUER_KEYS_META).await? else {
            return Ok(None);
        };
        let plain = self
            .master()
            .open(&sealed, ISSUER_KEYS_META.as_bytes())
            .ok_or_else(|| ServiceError::Internal("issuer keys do not open".into()))?;
        let keys = Arc::new(
            IssuerKeys::from_bytes(&plain)
                .ok_or_else(|| ServiceError::Internal("issuer keys are corrupt".into()))?,
        );
        *self.issuer_keys.write().unwrap_or_else(|e| e.into_inner()) = Some(keys.clone());
        Ok(Some(keys))
    }

    /// The JWKS keycard publishes (every account's issuer shares the keys).
    pub async fn issuer_jwks(&self) -> Result<Value> {
        Ok(self.issuer_keys().await?.jwks())
    }

    /// The account whose issuer `id` is (the last segment of its issuer URL).
    pub fn issuer_by_id(&self, id: &str) -> Option<String> {
        let st = self.state();
        st.accounts.values().find_map(|a| {
            let o = a.federation.outbound.as_ref()?;
            o.issuer
                .rsplit('/')
                .next()
                .filter(|x| *x == id)
                .map(|_| o.issuer.clone())
        })
    }

    fn is_own_issuer(&self, iss: &str) -> bool {
        let st = self.state();
        st.accounts.values().any(|a| {
            a.federation
                .outbound
                .as_ref()
                .is_some_and(|o| o.issuer == iss)
        })
    }

    // ------------------------------------------- outbound federation

    /// EnableOutboundWebIdentityFederation: the issuer is
    /// `https://HOST/_keycard/oidc/ID`, HOST being how the caller reached
    /// keycard; enabling again after a disable keeps the issuer.
    pub async fn enable_outbound(&self, account: &str, host: &str) -> Result<String> {
        self.issuer_keys().await?;
        let fresh = format!(
            "https://{host}{ISSUER_PATH}{}",
            uuid::Uuid::new_v4().simple()
        );
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            let issuer = match &a.federation.outbound {
                Some(o) if o.enabled => {
                    return Err(ServiceError::Modeled(
                        "FeatureEnabled",
                        409,
                        "Outbound identity federation is already enabled for this account.".into(),
                    ));
                }
                Some(o) => o.issuer.clone(),
                None => fresh.clone(),
            };
            a.federation.outbound = Some(Outbound {
                issuer: issuer.clone(),
                enabled: true,
            });
            Ok((put(a), issuer))
        })
        .await
    }

    pub async fn disable_outbound(&self, account: &str) -> Result<()> {
        self.mutate(|st| {
            let mut a = account_of(st, account)?;
            match a.federation.outbound.as_mut() {
                Some(o) if o.enabled => o.enabled = false,
                _ => return Err(feature_disabled()),
            }
            Ok((put(a), ()))
        })
        .await
    }

    /// GetOutboundWebIdentityFederationInfo: the issuer, when enabled.
    pub fn outbound_info(&self, account: &str) -> Result<String> {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.federation.outbound.clone())
            .filter(|o| o.enabled)
            .map(|o| o.issuer)
            .ok_or_else(feature_disabled)
    }
}

fn feature_disabled() -> ServiceError {
    ServiceError::Modeled(
        "FeatureDisabled",
        404,
        "Outbound identity federation is disabled for this account.".into(),
    )
}

// ------------------------------------------------- GetWebIdentityToken

/// What GetWebIdentityToken takes.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub audiences: Vec<String>,
    pub duration: Option<i64>,
    pub algorithm: String,
    pub tags: Vec<Tag>,
}

/// The token's subject: the role of a role session, else the caller's ARN.
pub fn token_subject(caller: &Caller) -> String {
    match caller.session().and_then(|s| s.claims.role.as_ref()) {
        Some(r) => r.arn.clone(),
        None => caller.principal.arn.clone(),
    }
}

impl Keycard {
    /// Check a GetWebIdentityToken request before it is authorized.
    pub fn check_token_request(&self, r: &TokenRequest) -> Result<i64> {
        if r.audiences.is_empty() || r.audiences.len() > 10 {
            return Err(ServiceError::ValidationError(
                "1 validation error detected: Value at 'audience' failed to satisfy constraint: Member must have length between 1 and 10".into(),
            ));
        }
        if let Some(a) = r
            .audiences
            .iter()
            .find(|a| a.is_empty() || a.chars().count() > 1000)
        {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{a}' at 'audience' failed to satisfy constraint: Member must have length between 1 and 1000"
            )));
        }
        if r.algorithm != "RS256" && r.algorithm != "ES384" {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{}' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RS256, ES384]",
                r.algorithm
            )));
        }
        let d = r.duration.unwrap_or(300);
        if !(60..=3600).contains(&d) {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 60 and 3600"
            )));
        }
        validate::tags(&r.tags)?;
        Ok(d)
    }

    /// GetWebIdentityToken (authorized by the caller): a JWT from the
    /// account's issuer whose `sub` is the caller's role (or user) ARN.
    pub async fn get_web_identity_token(
        &self,
        caller: &Caller,
        region: &str,
        r: &TokenRequest,
    ) -> Result<(String, i64)> {
        let d = self.check_token_request(r)?;
        let issuer = self
            .state()
            .accounts
            .get(&caller.account)
            .and_then(|a| a.federation.outbound.clone())
            .filter(|o| o.enabled)
            .map(|o| o.issuer)
            .ok_or_else(|| {
                ServiceError::Modeled(
                    "OutboundWebIdentityFederationDisabledException",
                    403,
                    "Outbound web identity federation is not enabled for this account.".into(),
                )
            })?;
        let t = now();
        if let Some(s) = caller.session()
            && t + d > s.claims.expires
        {
            return Err(ServiceError::Modeled(
                "SessionDurationEscalationException",
                403,
                "The requested token duration would extend the session beyond its original expiration time.".into(),
            ));
        }
        let aud = match r.audiences.as_slice() {
            [one] => Value::String(one.clone()),
            many => json!(many),
        };
        let tags: serde_json::Map<String, Value> = r
            .tags
            .iter()
            .map(|t| (t.key.clone(), Value::String(t.value.clone())))
            .collect();
        let claims = json!({
            "iss": issuer,
            "sub": token_subject(caller),
            "aud": aud,
            "iat": t,
            "nbf": t,
            "exp": t + d,
            "jti": uuid::Uuid::new_v4().to_string(),
            "https://sts.amazonaws.com/": {
                "aws_account": caller.account,
                "source_region": region,
                "principal_id": caller.principal.arn,
                "request_tags": tags,
            },
        });
        if claims.to_string().len() > 16 * 1024 {
            return Err(ServiceError::Modeled(
                "JWTPayloadSizeExceededException",
                400,
                "The requested token payload size exceeds the maximum allowed size.".into(),
            ));
        }
        let token = self
            .issuer_keys()
            .await?
            .sign(&r.algorithm, &claims)
            .ok_or_else(|| ServiceError::Internal("signing failed".into()))?;
        Ok((token, t + d))
    }
}

// -------------------------------------------- AssumeRoleWithWebIdentity

/// What AssumeRoleWithWebIdentity takes.
#[derive(Debug, Clone, Default)]
pub struct WebIdentityInput {
    pub role_arn: String,
    pub session_name: String,
    pub token: SecretKey,
    pub provider_id: Option<String>,
    pub duration: Option<i64>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

/// The answer, and who the caller turned out to be (for the audit event).
#[derive(Debug)]
pub struct WebIdentityAnswer {
    pub assumed: AssumedRole,
    pub subject: String,
    pub provider: String,
    pub audience: String,
    pub caller: Caller,
}

fn invalid_token(m: &str) -> ServiceError {
    ServiceError::Modeled("InvalidIdentityToken", 400, m.to_string())
}

fn not_authorized() -> ServiceError {
    ServiceError::AccessDenied("Not authorized to perform sts:AssumeRoleWithWebIdentity".into())
}

/// The token's time claims against `now`.
fn check_times(jwt: &Jwt, t: i64) -> Result<()> {
    let exp = jwt
        .time_claim("exp")
        .ok_or_else(|| invalid_token("The web identity token has no expiration (exp) claim."))?;
    if t >= exp {
        return Err(ServiceError::Modeled(
            "ExpiredTokenException",
            400,
            format!(
                "Token expired: current date/time {t} must be before the expiration date/time {exp}"
            ),
        ));
    }
    if jwt.time_claim("nbf").is_some_and(|n| n > t + SKEW) {
        return Err(ServiceError::Modeled(
            "IDPRejectedClaim",
            403,
            "Token is not yet valid (nbf is in the future).".into(),
        ));
    }
    if jwt.time_claim("iat").is_some_and(|i| i > t + SKEW) {
        return Err(ServiceError::Modeled(
            "IDPRejectedClaim",
            403,
            "Token was issued in the future (iat).".into(),
        ));
    }
    Ok(())
}

/// DurationSeconds of a federated AssumeRole: 900..=43200, within the role's maximum.
pub(crate) fn check_duration(duration: Option<i64>, max: u32) -> Result<i64> {
    let d = duration.unwrap_or(3600);
    if !(900..=43_200).contains(&d) {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200"
        )));
    }
    if d > i64::from(max) {
        return Err(ServiceError::ValidationError(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                .into(),
        ));
    }
    Ok(d)
}

impl Keycard {
    /// The JWKS a provider's tokens are verified with: keycard's own for
    /// its own issuer, else the one the administrator gave.
    async fn provider_jwks(&self, iss: &str, p: &OidcProvider, kid: Option<&str>) -> Result<Value> {
        if self.is_own_issuer(iss) {
            let mut keys = self.issuer_keys().await?;
            if kid.is_some_and(|k| !keys.has_kid(k))
                && let Some(k) = self.load_issuer_keys().await?
            {
                keys = k;
            }
            return Ok(keys.jwks());
        }
        p.jwks
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| {
                ServiceError::Modeled(
                    "IDPCommunicationError",
                    400,
                    "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements".into(),
                )
            })
    }

    /// Verify the token and find its provider in the role's account.
    async fn verify_web_identity(
        &self,
        role_account: &str,
        token: &str,
    ) -> Result<(Jwt, OidcProvider, String)> {
        let jwt = Jwt::parse(token)
            .ok_or_else(|| invalid_token("Couldn't parse the web identity token."))?;
        let iss = jwt
            .str_claim("iss")
            .ok_or_else(|| invalid_token("The web identity token has no issuer (iss) claim."))?
            .to_string();
        let url = iss
            .strip_prefix("https://")
            .unwrap_or(&iss)
            .trim_end_matches('/')
            .to_string();
        let provider = self
            .state()
            .accounts
            .get(role_account)
            .and_then(|a| a.federation.oidc.get(&url).cloned())
            .ok_or_else(|| {
                invalid_token(&format!(
                    "No OpenIDConnect provider found in your account for {iss}"
                ))
            })?;
        let jwks = self.provider_jwks(&iss, &provider, jwt.kid()).await?;
        if !jwt.verify(&jwks) {
            return Err(invalid_token(
                "The web identity token's signature could not be verified.",
            ));
        }
        Ok((jwt, provider, iss))
    }

    /// AssumeRoleWithWebIdentity: an unsigned call; the token is the
    /// credential and the role's trust policy the authorization.
    pub async fn assume_role_with_web_identity(
        &self,
        input: WebIdentityInput,
        request_ctx: &Arc<Context>,
        enforce: bool,
        decided: &mut Vec<Decided>,
    ) -> Result<WebIdentityAnswer> {
        validate_session_name(&input.session_name)?;
        let token = input.token.expose().to_string();
        if token.len() < 4 || token.len() > crate::jwt::MAX_TOKEN {
            return Err(ServiceError::ValidationError(
                "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000".into(),
            ));
        }
        let packed = crate::sts::session_policies(input.policy.as_deref(), &input.policy_arns)?;
        let (role_account, role_name) = parse_role_arn(&input.role_arn).ok_or_else(|| {
            ServiceError::ValidationError(format!("{} is invalid", input.role_arn))
        })?;
        let (jwt, provider, iss) = self.verify_web_identity(&role_account, &token).await?;
        let aud = jwt
            .list_claim("aud")
            .into_iter()
            .find(|a| provider.client_ids.contains(a))
            .ok_or_else(|| invalid_token("Incorrect token audience"))?;
        check_times(&jwt, now())?;
        let sub = jwt
            .str_claim("sub")
            .ok_or_else(|| invalid_token("The web identity token has no subject (sub) claim."))?
            .to_string();
        let role = self
            .state()
            .role(&role_account, &role_name)
            .cloned()
            .filter(|r| r.arn() == input.role_arn)
            .ok_or_else(not_authorized)?;
        let duration = check_duration(input.duration, role.max_session_duration)?;
        let provider_arn = oidc_arn(&role_account, &provider.url);
        let caller = WebIdentity {
            provider: provider.url.clone(),
            provider_arn: provider_arn.clone(),
            sub: sub.clone(),
            aud: aud.clone(),
            saml: false,
        }
        .caller(&role_account);
        let amr = jwt.list_claim("amr");
        let mut check = Check::new("sts:AssumeRoleWithWebIdentity", input.role_arn.clone())
            .account(role_account.clone())
            .policy(ResourcePolicy::Trust(&role.trust))
            .key("sts:RoleSessionName", input.session_name.clone())
            .key("aws:FederatedProvider", provider_arn.clone())
            .key(format!("{}:aud", provider.url), aud.clone())
            .key(format!("{}:sub", provider.url), sub.clone());
        if !amr.is_empty() {
            check = check.key_multi(format!("{}:amr", provider.url), amr);
        }
        let (d, refused) = self.decide_enforced(&caller, request_ctx, &check, enforce);
        decided.push(d);
        if refused.is_some() {
            return Err(not_authorized());
        }
        let t = now();
        let credentials = self.issue(SessionClaims {
            account: role_account.clone(),
            issued: t,
            expires: t + duration,
            role: Some(RoleRef::of(&role)),
            session_name: input.session_name.clone(),
            policy: input.policy.clone(),
            policy_arns: input.policy_arns.clone(),
            ..SessionClaims::default()
        });
        Ok(WebIdentityAnswer {
            assumed: AssumedRole::of(&role, &input.session_name, credentials, packed, None),
            subject: sub,
            provider: input.provider_id.clone().unwrap_or(iss),
            audience: aud,
            caller,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_follow_aws_rules() {
        assert_eq!(
            provider_url("https://token.actions.githubusercontent.com/").ok(),
            Some("token.actions.githubusercontent.com".to_string())
        );
        assert_eq!(
            provider_url("https://h:8080/a/b").ok(),
            Some("h:8080/a/b".to_string())
        );
        assert!(provider_url("http://example.com").is_err());
        assert!(provider_url("https://").is_err());
        assert!(provider_url("https://x.com/?q=1").is_err());
    }

    #[test]
    fn oidc_arns_round_trip() {
        let arn = oidc_arn("123456789012", "h.example/p");
        assert_eq!(
            parse_oidc_arn(&arn).ok(),
            Some(("123456789012".into(), "h.example/p".into()))
        );
        assert!(parse_oidc_arn("arn:aws:iam::123456789012:role/x").is_err());
    }

    #[test]
    fn thumbprints_are_forty_characters_and_at_most_five() {
        let t = "a".repeat(40);
        assert!(check_thumbprints(std::slice::from_ref(&t)).is_ok());
        assert!(check_thumbprints(&["abc".into()]).is_err());
        assert!(check_thumbprints(&["z".repeat(41)]).is_err());
        assert!(check_thumbprints(&vec![t; 6]).is_err());
    }
}

// ------------------------------------------------- GetFederationToken

/// An identity policy allowing everything: the root's side of a session
/// the root federated (its session policies then decide).
pub fn allow_all() -> Option<Arc<keycard_policy::Policy>> {
    static ALL: std::sync::OnceLock<Option<Arc<keycard_policy::Policy>>> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        keycard_policy::Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            keycard_policy::PolicyKind::Identity,
        )
        .ok()
        .map(Arc::new)
    })
    .clone()
}

/// A session policy allowing nothing: a federated user given no policy
/// has no permissions, as in AWS.
const NO_PERMISSIONS: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

/// What GetFederationToken takes.
#[derive(Debug, Clone, Default)]
pub struct FederationInput {
    pub name: String,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub duration: Option<i64>,
    pub tags: Vec<Tag>,
}

/// The answer to GetFederationToken.
#[derive(Debug)]
pub struct FederatedUser {
    pub credentials: crate::sts::Credentials,
    pub id: String,
    pub arn: String,
    pub packed_policy_size: Option<u32>,
}

/// `arn:aws:sts::ACCOUNT:federated-user/NAME`.
pub fn federated_user_arn(account: &str, name: &str) -> String {
    format!("arn:aws:sts::{account}:federated-user/{name}")
}

impl Keycard {
    /// Check a GetFederationToken request before it is authorized: the
    /// name, session policies and duration; session callers are refused.
    pub fn check_federation_input(&self, caller: &Caller, input: &FederationInput) -> Result<()> {
        let n = input.name.chars().count();
        if !(2..=32).contains(&n)
            || !input
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
                input.name
            )));
        }
        if !matches!(caller.kind, CallerKind::Root | CallerKind::User { .. }) {
            return Err(ServiceError::AccessDenied(
                "Cannot call GetFederationToken with session credentials".into(),
            ));
        }
        crate::sts::session_policies(input.policy.as_deref(), &input.policy_arns)?;
        if let Some(d) = input.duration
            && !(900..=129_600).contains(&d)
        {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 129600"
            )));
        }
        if input.tags.len() > 50 {
            return Err(ServiceError::ValidationError(
                "Cannot exceed quota for SessionTags: 50".into(),
            ));
        }
        Ok(())
    }

    /// GetFederationToken (authorized by the caller): a federated-user
    /// session whose permissions are the caller's cut down by the session
    /// policies (none given: no permissions). The root's sessions last at
    /// most an hour.
    pub fn get_federation_token(
        &self,
        caller: &Caller,
        input: FederationInput,
    ) -> Result<FederatedUser> {
        self.check_federation_input(caller, &input)?;
        let packed = crate::sts::session_policies(input.policy.as_deref(), &input.policy_arns)?;
        let user = match &caller.kind {
            CallerKind::User { name, .. } => Some(name.clone()),
            _ => None,
        };
        let d = input.duration.unwrap_or(43_200);
        let d = if user.is_none() { d.min(3600) } else { d };
        let policy = match (&input.policy, input.policy_arns.is_empty()) {
            (None, true) => Some(NO_PERMISSIONS.to_string()),
            (p, _) => p.clone(),
        };
        let t = now();
        let credentials = self.issue(SessionClaims {
            account: caller.account.clone(),
            issued: t,
            expires: t + d,
            user,
            session_name: input.name.clone(),
            policy,
            policy_arns: input.policy_arns.clone(),
            tags: input.tags.clone(),
            federated: Some(input.name.clone()),
            ..SessionClaims::default()
        });
        Ok(FederatedUser {
            credentials,
            id: format!("{}:{}", caller.account, input.name),
            arn: federated_user_arn(&caller.account, &input.name),
            packed_policy_size: packed,
        })
    }
}
