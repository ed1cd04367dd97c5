//! What keycard knows about an access key id found somewhere (by `keycard
//! scan` or a user-data finding): whether it is live and whose it is.
//! Long-term keys come from the read model (live and deleted keys);
//! session keys (`ASIA…`) from the audit trail, which records the call that
//! issued them and the calls made with them.

use keycard_store::AuditQuery;
use serde::Serialize;
use serde_json::Value;

use crate::model::{AccessKey, DeletedAccessKey, KeyStatus};
use crate::sts::iso8601;
use crate::{Keycard, now};

/// How many of the newest issuing events are searched for a session key.
const ISSUE_SEARCH: u32 = 5_000;
/// The STS calls whose response carries new session credentials.
const ISSUING_EVENTS: [&str; 4] = [
    "AssumeRole",
    "GetSessionToken",
    "AssumeRoleWithWebIdentity",
    "AssumeRoleWithSAML",
];

/// The state of a key id as keycard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundKeyStatus {
    /// Usable now: an active long-term key or an unexpired session.
    Active,
    /// Exists but unusable: a deactivated key or an expired session.
    Inactive,
    /// A long-term key that was deleted.
    Deleted,
    /// Never issued by this keycard (or a session it has no record of).
    Unknown,
}

/// The answer of `GET /_keycard/admin/access-keys/{id}`. Never the secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundKey {
    pub access_key_id: String,
    pub status: FoundKeyStatus,
    /// The user, root or role session the key belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<String>,
    /// Sessions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

impl FoundKey {
    fn unknown(id: &str) -> Self {
        FoundKey {
            access_key_id: id.to_string(),
            status: FoundKeyStatus::Unknown,
            owner_arn: None,
            account: None,
            created_date: None,
            last_used_date: None,
            deleted_date: None,
            expiration: None,
        }
    }
}

fn owner_arn(kc: &Keycard, account: &str, user: Option<&str>) -> String {
    match user {
        None => format!("arn:aws:iam::{account}:root"),
        Some(u) => kc
            .state()
            .user(account, u)
            .map(|u| u.arn())
            .unwrap_or_else(|| format!("arn:aws:iam::{account}:user/{u}")),
    }
}

impl Keycard {
    /// Look up a key id found outside keycard (see the module docs).
    pub async fn found_key(&self, id: &str) -> crate::error::Result<FoundKey> {
        if let Some(k) = self.live_key(id) {
            return Ok(k);
        }
        if let Some(k) = self.deleted_key(id) {
            return Ok(k);
        }
        if id.starts_with("ASIA") {
            return self.session_key(id).await;
        }
        Ok(FoundKey::unknown(id))
    }

    fn live_key(&self, id: &str) -> Option<FoundKey> {
        let k: AccessKey = self.state().access_keys.get(id).cloned()?;
        Some(FoundKey {
            access_key_id: k.id.clone(),
            status: match k.status {
                KeyStatus::Active => FoundKeyStatus::Active,
                KeyStatus::Inactive => FoundKeyStatus::Inactive,
            },
            owner_arn: Some(owner_arn(self, &k.account, k.user.as_deref())),
            account: Some(k.account.clone()),
            created_date: Some(iso8601(k.created)),
            last_used_date: k.last_used.as_ref().map(|l| iso8601(l.date)),
            deleted_date: None,
            expiration: None,
        })
    }

    fn deleted_key(&self, id: &str) -> Option<FoundKey> {
        let k: DeletedAccessKey = self.state().deleted_access_keys.get(id).cloned()?;
        Some(FoundKey {
            access_key_id: k.id.clone(),
            status: FoundKeyStatus::Deleted,
            owner_arn: Some(owner_arn(self, &k.account, k.user.as_deref())),
            account: Some(k.account.clone()),
            created_date: Some(iso8601(k.created)),
            last_used_date: k.last_used.as_ref().map(|l| iso8601(l.date)),
            deleted_date: Some(iso8601(k.deleted)),
            expiration: None,
        })
    }

    /// A session key: the newest call made with it (owner, last use) and
    /// the STS call that issued it (owner, creation, expiration).
    async fn session_key(&self, id: &str) -> crate::error::Result<FoundKey> {
        let mut out = FoundKey::unknown(id);
        let used = self
            .store()
            .query_audit(&AuditQuery {
                access_key_id: Some(id.to_string()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if let Some(row) = used.first() {
            let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
            out.owner_arn = body
                .pointer("/userIdentity/arn")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.last_used_date = Some(iso8601(row.event_time_ms / 1000));
            out.account = Some(row.account.clone()).filter(|a| !a.is_empty());
        }
        if let Some((row, body)) = self.issuing_event(id).await? {
            let ptr = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
            out.owner_arn = ptr("/responseElements/assumedRoleUser/arn")
                .or_else(|| ptr("/userIdentity/arn"))
                .or(out.owner_arn);
            out.created_date = Some(iso8601(row.event_time_ms / 1000));
            out.expiration = ptr("/responseElements/credentials/expiration");
            out.account = Some(row.account.clone())
                .filter(|a| !a.is_empty())
                .or(out.account);
        }
        if out.owner_arn.is_some() {
            let live = out
                .expiration
                .as_deref()
                .is_none_or(|e| e > iso8601(now()).as_str());
            out.status = if live {
                FoundKeyStatus::Active
            } else {
                FoundKeyStatus::Inactive
            };
        }
        Ok(out)
    }

    async fn issuing_event(
        &self,
        id: &str,
    ) -> crate::error::Result<Option<(keycard_store::AuditRow, Value)>> {
        for name in ISSUING_EVENTS {
            let rows = self
                .store()
                .query_audit(&AuditQuery {
                    event_name: Some(name.to_string()),
                    limit: ISSUE_SEARCH,
                    ..Default::default()
                })
                .await?;
            for row in rows {
                if !row.body.contains(id) {
                    continue;
                }
                let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
                if body
                    .pointer("/responseElements/credentials/accessKeyId")
                    .and_then(Value::as_str)
                    == Some(id)
                {
                    return Ok(Some((row, body)));
                }
            }
        }
        Ok(None)
    }
}
