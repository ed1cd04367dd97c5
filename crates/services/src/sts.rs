//! STS: temporary credentials. A session token is self-contained: the
//! claims (who, until when, which session policy) sealed under the token
//! key, so verifying a request needs no database read and tokens survive a
//! restart.

use std::sync::Arc;

use keycard_policy::{Context, Policy, PolicyKind, policy_size};
use keycard_proto::secret::SecretKey;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, CallerKind, Check, Decided, ResourcePolicy};
use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::model::Tag;
use crate::{Keycard, now};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleRef {
    pub name: String,
    pub id: String,
    pub arn: String,
}

impl RoleRef {
    pub fn of(role: &crate::model::Role) -> RoleRef {
        RoleRef {
            name: role.name.clone(),
            id: role.id.clone(),
            arn: role.arn(),
        }
    }
}

/// Instance-role sessions carry where they were delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceClaim {
    pub id: String,
    /// `ec2:RoleDelivery`: "1.0" (IMDSv1) or "2.0" (IMDSv2).
    pub delivery: String,
    pub private_ip: Option<String>,
    /// The instance profile association this session was issued under.
    pub association: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(rename = "k")]
    pub access_key_id: String,
    #[serde(rename = "s")]
    pub secret: SecretKey,
    #[serde(rename = "a")]
    pub account: String,
    #[serde(rename = "i")]
    pub issued: i64,
    #[serde(rename = "e")]
    pub expires: i64,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleRef>,
    /// GetSessionToken by a user (None with no role = root).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "n", default)]
    pub session_name: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(rename = "pa", default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(rename = "si", default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    #[serde(rename = "c", default)]
    pub chained: bool,
    #[serde(rename = "ec2", default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceClaim>,
    /// Signed in with an MFA code (console sign-in of an MFA user).
    #[serde(rename = "m", default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa: bool,
    /// GetFederationToken: the federated user's name (`user` is the IAM
    /// user who called it, `None` for root).
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<String>,
}

/// An opened session: claims plus the parsed session policy.
#[derive(Debug)]
pub struct Session {
    pub claims: SessionClaims,
    pub secret: SecretKey,
    pub session_policy: Option<Arc<Policy>>,
}

impl Session {
    pub fn user_id(&self) -> String {
        let c = &self.claims;
        match (&c.role, &c.user) {
            _ if c.federated.is_some() => {
                format!(
                    "{}:{}",
                    c.account,
                    c.federated.as_deref().unwrap_or_default()
                )
            }
            (Some(r), _) => format!("{}:{}", r.id, c.session_name),
            (None, Some(u)) => u.clone(),
            (None, None) => c.account.clone(),
        }
    }
}

/// Credentials as STS returns them.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretKey,
    pub session_token: String,
    pub expiration: i64,
}

/// The session token is a bearer credential too: `Debug` shows neither it nor the secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &"***")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// The answer to AssumeRole.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    pub credentials: Credentials,
    pub assumed_role_id: String,
    pub arn: String,
    pub packed_policy_size: Option<u32>,
    pub source_identity: Option<String>,
}

impl AssumedRole {
    /// The answer for a session `session_name` of `role` (its account's
    /// `assumed-role/ROLE/SESSION` ARN and `ROLEID:SESSION` id).
    pub fn of(
        role: &crate::model::Role,
        session_name: &str,
        credentials: Credentials,
        packed_policy_size: Option<u32>,
        source_identity: Option<String>,
    ) -> AssumedRole {
        AssumedRole {
            credentials,
            assumed_role_id: format!("{}:{session_name}", role.id),
            arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{session_name}",
                role.account, role.name
            ),
            packed_policy_size,
            source_identity,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AssumeRoleInput {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Option<i64>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<Tag>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
}

/// `%Y-%m-%dT%H:%M:%SZ`. Written digit by digit: it is formatted twice
/// per request (the `aws:CurrentTime` key and the audit event), and
/// `format!` with padding cost more than the rest of both together.
pub fn iso8601(epoch: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let Ok(year) = u32::try_from(t.year()) else {
        return iso8601_formatted(t);
    };
    let mut out = String::with_capacity(20);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, u32::from(t.month() as u8), 2);
    out.push('-');
    push_digits(&mut out, u32::from(t.day()), 2);
    out.push('T');
    push_digits(&mut out, u32::from(t.hour()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.minute()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.second()), 2);
    out.push('Z');
    out
}

/// The same text through `format!`: the path for years before 0, and the
/// reference the digit-by-digit writer is tested against.
fn iso8601_formatted(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `v` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, v: u32, width: u32) {
    let digits = v.checked_ilog10().unwrap_or(0) + 1;
    for i in (0..digits.max(width)).rev() {
        let d = (v / 10u32.pow(i)) % 10;
        out.push(char::from(b'0' + d as u8));
    }
}

fn validation(msg: String) -> ServiceError {
    ServiceError::ValidationError(msg)
}

/// A role session's tags and source identity: their condition keys on
/// the trust check, and the actions they need besides `base`
/// (`sts:TagSession`, `sts:SetSourceIdentity`), each decided in turn.
pub fn session_extras<'a>(
    mut check: Check<'a>,
    base: &'static str,
    tags: &[Tag],
    source_identity: Option<&str>,
) -> (Check<'a>, Vec<&'static str>) {
    let mut actions = vec![base];
    if let Some(s) = source_identity {
        check = check.key("sts:SourceIdentity", s.to_string());
        actions.push("sts:SetSourceIdentity");
    }
    for t in tags {
        check = check.key(format!("aws:RequestTag/{}", t.key), t.value.clone());
    }
    if !tags.is_empty() {
        check = check.key_multi("aws:TagKeys", tags.iter().map(|t| t.key.clone()).collect());
        actions.insert(1, "sts:TagSession");
    }
    (check, actions)
}

pub fn validate_session_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if !(2..=64).contains(&n)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(())
}

/// Check the session policy and policy ARNs passed to an AssumeRole*
/// call; the packed size (percent of the allowance) when a policy is given.
pub fn session_policies(policy: Option<&str>, arns: &[String]) -> Result<Option<u32>> {
    let mut packed = None;
    if let Some(p) = policy {
        Policy::parse(p, PolicyKind::Session)?;
        packed = Some((policy_size(p) * 100 / 2048) as u32);
        if policy_size(p) > 2048 {
            return Err(ServiceError::PackedPolicyTooLarge(
                "Packed policy consumes more than 100% of the allotted space".into(),
            ));
        }
    }
    if arns.len() > 10 {
        return Err(validation(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10".into(),
        ));
    }
    for arn in arns {
        crate::validate::policy_arn(arn)?;
    }
    Ok(packed)
}

/// Parse `arn:aws:iam::ACCOUNT:role/PATH/NAME` -> (account, name).
pub fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (acct, res) = rest.split_once(':')?;
    let res = res.strip_prefix("role/")?;
    let name = res.rsplit('/').next()?;
    if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((acct.to_string(), name.to_string()))
}

impl Keycard {
    /// Open a session token, from cache when seen before.
    pub fn open_session(&self, token: &str) -> Result<Arc<Session>> {
        {
            let cache = self.session_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = cache.get(token) {
                return Ok(s.clone());
            }
        }
        let invalid = || {
            ServiceError::InvalidClientTokenId(
                "The security token included in the request is invalid.".into(),
            )
        };
        let plain = crypto::decode_token(&self.token_ring(), token).ok_or_else(invalid)?;
        let claims: SessionClaims = serde_json::from_slice(&plain).map_err(|_| invalid())?;
        let session_policy = match &claims.policy {
            Some(p) => Some(Arc::new(
                Policy::parse(p, PolicyKind::Session).map_err(|_| invalid())?,
            )),
            None => None,
        };
        let s = Arc::new(Session {
            secret: claims.secret.clone(),
            claims,
            session_policy,
        });
        let mut cache = self.session_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 50_000 {
            cache.clear();
        }
        cache.insert(token.to_string(), s.clone());
        Ok(s)
    }

    /// Seal claims into credentials.
    pub(crate) fn issue(&self, mut claims: SessionClaims) -> Credentials {
        claims.access_key_id = keycard_proto::ids::access_key_id(
            "ASIA",
            &claims.account,
            &crypto::random_bytes::<16>(),
        );
        claims.secret = SecretKey::new(keycard_proto::ids::secret_access_key(
            &crypto::random_bytes::<30>(),
        ));
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let token = crypto::encode_token(&self.token_ring(), &json);
        Credentials {
            access_key_id: claims.access_key_id.clone(),
            secret_access_key: claims.secret.clone(),
            session_token: token,
            expiration: claims.expires,
        }
    }

    /// AssumeRole: the trust policy must allow the caller, and the
    /// caller's own policies must allow sts:AssumeRole on the role unless
    /// the trust policy names the caller in the same account. Root
    /// credentials may not assume roles, as in AWS.
    pub fn assume_role(
        &self,
        caller: &Caller,
        input: AssumeRoleInput,
        request_ctx: &Arc<Context>,
        enforce: bool,
        decided: &mut Vec<Decided>,
    ) -> Result<AssumedRole> {
        validate_session_name(&input.session_name)?;
        if input.role_arn.len() < 20 || input.role_arn.len() > 2048 {
            return Err(validation(format!(
                "1 validation error detected: Value '{}' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20",
                input.role_arn
            )));
        }
        let denied = |reason: &str| {
            ServiceError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {} {reason}",
                caller.principal.arn, input.role_arn
            ))
        };
        if caller.is_root() && enforce {
            return Err(ServiceError::AccessDenied(
                "Roles may not be assumed by root accounts.".into(),
            ));
        }
        let (role_account, role_name) = parse_role_arn(&input.role_arn)
            .ok_or_else(|| validation(format!("{} is invalid", input.role_arn)))?;
        let role = self
            .state()
            .role(&role_account, &role_name)
            .cloned()
            .filter(|r| r.arn() == input.role_arn)
            .ok_or_else(|| {
                denied("because no resource-based policy allows the sts:AssumeRole action")
            })?;
        let chained = caller.session().is_some_and(|s| s.claims.role.is_some());
        let duration = input.duration.unwrap_or(3600);
        if chained && duration > 3600 {
            return Err(validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.".into(),
            ));
        }
        if duration < 900 {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            )));
        }
        if duration > role.max_session_duration as i64 {
            return Err(validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                    .into(),
            ));
        }
        let packed = session_policies(input.policy.as_deref(), &input.policy_arns)?;
        if input.tags.len() > 50 {
            return Err(validation("Cannot exceed quota for SessionTags: 50".into()));
        }
        // Trust policy + identity side, one decision per action, each in
        // the audit event.
        let mut check = Check::new("sts:AssumeRole", input.role_arn.clone())
            .account(role_account.clone())
            .policy(ResourcePolicy::Trust(&role.trust))
            .key("sts:RoleSessionName", input.session_name.clone());
        if let Some(e) = &input.external_id {
            check = check.key("sts:ExternalId", e.clone());
        }
        let (check, actions) = session_extras(
            check,
            "sts:AssumeRole",
            &input.tags,
            input.source_identity.as_deref(),
        );
        if let Some(m) = self.decide_each(caller, request_ctx, check, &actions, enforce, decided) {
            return Err(ServiceError::AccessDenied(m));
        }
        // Transitive source identity: a chained session keeps it.
        let source_identity = input.source_identity.clone().or_else(|| {
            caller
                .session()
                .and_then(|s| s.claims.source_identity.clone())
        });
        let t = now();
        let claims = SessionClaims {
            access_key_id: String::new(),
            secret: SecretKey::default(),
            account: role_account.clone(),
            issued: t,
            expires: t + duration,
            role: Some(RoleRef::of(&role)),
            user: None,
            session_name: input.session_name.clone(),
            policy: input.policy.clone(),
            policy_arns: input.policy_arns.clone(),
            tags: input.tags.clone(),
            source_identity: source_identity.clone(),
            chained,
            instance: None,
            mfa: false,
            federated: None,
        };
        let credentials = self.issue(claims);
        Ok(AssumedRole::of(
            &role,
            &input.session_name,
            credentials,
            packed,
            source_identity,
        ))
    }

    /// GetSessionToken for a user or the root.
    pub fn get_session_token(&self, caller: &Caller, duration: Option<i64>) -> Result<Credentials> {
        self.session_token_for(caller, duration, false)
    }

    /// [`Keycard::get_session_token`], recording whether the principal
    /// proved an MFA code (the console's sign-in).
    pub fn session_token_for(
        &self,
        caller: &Caller,
        duration: Option<i64>,
        mfa: bool,
    ) -> Result<Credentials> {
        let (user, max) = match &caller.kind {
            CallerKind::Root => (None, 3600),
            CallerKind::User { name, .. } => (Some(name.clone()), 129_600),
            _ => {
                return Err(ServiceError::AccessDenied(
                    "Cannot call GetSessionToken with session credentials".into(),
                ));
            }
        };
        let d = duration.unwrap_or(if user.is_some() { 43_200 } else { 3600 });
        if !(900..=129_600).contains(&d) {
            return Err(validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 129600"
            )));
        }
        let d = d.min(max);
        let t = now();
        Ok(self.issue(SessionClaims {
            access_key_id: String::new(),
            secret: SecretKey::default(),
            account: caller.account.clone(),
            issued: t,
            expires: t + d,
            role: None,
            user,
            session_name: String::new(),
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            source_identity: None,
            chained: false,
            instance: None,
            mfa,
            federated: None,
        }))
    }

    /// Issue an instance-role session (`assumed-role/ROLE/i-…`) on behalf
    /// of EC2, as the IMDS delivers it.
    pub fn issue_instance_session(
        &self,
        account: &str,
        role: &crate::model::Role,
        instance: InstanceClaim,
        lifetime: i64,
    ) -> Credentials {
        let t = now();
        self.issue(SessionClaims {
            access_key_id: String::new(),
            secret: SecretKey::default(),
            account: account.to_string(),
            issued: t,
            expires: t + lifetime,
            role: Some(RoleRef::of(role)),
            user: None,
            session_name: instance.id.clone(),
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            source_identity: None,
            chained: false,
            instance: Some(instance),
            mfa: false,
            federated: None,
        })
    }
}

/// Additional authenticated data of encoded authorization messages.
const AUTHZ_MESSAGE_AAD: &[u8] = b"authorization-message";

impl Keycard {
    /// EC2's "Encoded authorization failure message": the decision, the
    /// statements that made it and the request's context, sealed so only
    /// `sts:DecodeAuthorizationMessage` in the same account can read it.
    pub fn encode_authorization_message(
        &self,
        caller: &Caller,
        decided: &Decided,
        context: &Context,
    ) -> String {
        let e = &decided.evaluation;
        let conditions: Vec<serde_json::Value> = context
            .iter()
            .map(|(k, v)| {
                serde_json::json!({"key": k, "values": {"items": v.iter()
                    .map(|x| serde_json::json!({"value": x})).collect::<Vec<_>>()}})
            })
            .collect();
        let body = serde_json::json!({
            "account": caller.account,
            "message": {
                "allowed": e.is_allowed(),
                "explicitDeny": e.decision == keycard_policy::Decision::ExplicitDeny,
                "matchedStatements": {"items": e.matched.iter().map(|m| serde_json::json!({
                    "statementId": m.sid.clone().unwrap_or_default(),
                    "effect": format!("{:?}", m.effect).to_uppercase(),
                    "principals": {"items": [{"value": caller.user_id()}]},
                    "policyName": m.policy_id,
                    "policyType": format!("{:?}", m.kind),
                    "index": m.index,
                })).collect::<Vec<_>>()},
                "failures": {"items": []},
                "context": {
                    "principal": {"id": caller.user_id(), "arn": caller.principal.arn},
                    "action": decided.action,
                    "resource": decided.resource,
                    "conditions": {"items": conditions},
                },
            },
        });
        let sealed = self
            .token_ring()
            .seal(body.to_string().as_bytes(), AUTHZ_MESSAGE_AAD);
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed)
    }

    /// `sts:DecodeAuthorizationMessage`: the JSON of a message encoded for
    /// the caller's account.
    pub fn decode_authorization_message(&self, caller: &Caller, encoded: &str) -> Result<String> {
        let invalid = || {
            ServiceError::InvalidAuthorizationMessage(
                "The message provided is invalid or was not found.".into(),
            )
        };
        let sealed = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            encoded.trim(),
        )
        .map_err(|_| invalid())?;
        let plain = self
            .token_ring()
            .open(&sealed, AUTHZ_MESSAGE_AAD)
            .ok_or_else(invalid)?;
        let v: serde_json::Value = serde_json::from_slice(&plain).map_err(|_| invalid())?;
        if v.get("account").and_then(|a| a.as_str()) != Some(caller.account.as_str()) {
            return Err(invalid());
        }
        Ok(v.get("message").cloned().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digit-by-digit writer agrees with `time`'s own formatting over
    /// the whole range, the epoch's edges and years before 1000 included.
    #[test]
    fn iso8601_matches_the_reference_format() {
        let reference = |epoch: i64| {
            iso8601_formatted(
                time::OffsetDateTime::from_unix_timestamp(epoch)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            )
        };
        let mut epochs = vec![
            0,
            -1,
            1_700_000_000,
            253_402_300_799,
            253_402_300_800,
            -62_135_596_800,
            -62_135_596_801,
            -30_000_000_000,
            i64::MAX,
            i64::MIN,
        ];
        let mut x: i64 = 12345;
        for _ in 0..10_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            epochs.push(x.rem_euclid(253_402_300_800 + 62_135_596_800) - 62_135_596_800);
        }
        for e in epochs {
            assert_eq!(iso8601(e), reference(e), "epoch {e}");
        }
    }

    #[test]
    fn role_arn_parsing() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/a/b/R"),
            Some(("123456789012".into(), "R".into()))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::123:role/R"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:user/R"), None);
    }

    #[test]
    fn iso_format() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn session_names() {
        assert!(validate_session_name("i-0123456789abcdef0").is_ok());
        assert!(validate_session_name("a").is_err());
        assert!(validate_session_name("has space").is_err());
    }
}
