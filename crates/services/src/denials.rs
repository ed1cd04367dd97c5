//! Every denial and would-be denial (soft enforcement) in the audit trail,
//! grouped by principal and action with what decided it: the report
//! behind `keycard audit denials`.

use std::collections::{BTreeMap, BTreeSet};

use keycard_store::{AuditQuery, AuditRow};
use serde::Serialize;
use serde_json::Value;

use crate::Keycard;
use crate::auth::SOFT;

/// Most events one report reads (newest first).
pub const MAX_EVENTS: usize = 200_000;

/// One principal's denials of one action.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDenials {
    pub action: String,
    /// Refused calls.
    pub denied: u64,
    /// Calls soft enforcement let through that enforcement would refuse.
    pub would_be_denied: u64,
    /// `ImplicitDeny` / `ExplicitDeny` counts.
    pub decisions: BTreeMap<String, u64>,
    pub resources: BTreeSet<String>,
    /// Operations (event names) that needed the action.
    pub operations: BTreeSet<String>,
    /// The statements that denied explicitly (`policy#sid`).
    pub denying_statements: BTreeSet<String>,
    /// The policy kinds that did not allow (for implicit denials).
    pub not_allowed_by: BTreeSet<String>,
    /// Condition keys a statement needed that the request did not carry.
    pub missing_context_keys: BTreeSet<String>,
    pub first_seen: String,
    pub last_seen: String,
}

/// One principal's denials, by action.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalDenials {
    pub principal: String,
    pub actions: Vec<ActionDenials>,
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The strings of the array member `k`.
fn strings<'a>(v: &'a Value, k: &str) -> impl Iterator<Item = String> + 'a {
    v.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
}

/// Fold one event's non-allowing decisions into the report.
fn fold(
    by: &mut BTreeMap<(String, String), ActionDenials>,
    ev: &Value,
    principal_filter: Option<&str>,
) {
    let principal = ev
        .pointer("/userIdentity/arn")
        .and_then(Value::as_str)
        .unwrap_or("anonymous")
        .to_string();
    if principal_filter.is_some_and(|p| p != principal) {
        return;
    }
    let time = text(ev, "eventTime");
    let name = text(ev, "eventName");
    let decisions = ev
        .get("keycardAuthorization")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for d in decisions {
        let decision = text(&d, "decision");
        if decision == "Allow" || decision.is_empty() {
            continue;
        }
        let action = text(&d, "action");
        let a = by
            .entry((principal.clone(), action.clone()))
            .or_insert_with(|| ActionDenials {
                action,
                first_seen: time.clone(),
                ..Default::default()
            });
        match d.get("overriddenBy").and_then(Value::as_str) {
            Some(SOFT) => a.would_be_denied += 1,
            Some(_) => {}
            None => a.denied += 1,
        }
        *a.decisions.entry(decision).or_default() += 1;
        a.resources.insert(text(&d, "resource"));
        a.operations.insert(name.clone());
        for m in d
            .get("matchedStatements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if text(m, "effect") == "Deny" {
                let sid = m.get("sid").and_then(Value::as_str).unwrap_or("");
                a.denying_statements
                    .insert(format!("{}#{sid}", text(m, "policyId")));
            }
        }
        a.not_allowed_by.extend(strings(&d, "missing"));
        a.missing_context_keys
            .extend(strings(&d, "missingContextKeys"));
        a.first_seen = a.first_seen.clone().min(time.clone());
        a.last_seen = a.last_seen.clone().max(time.clone());
    }
}

/// Group the denials of these events by principal, then action.
pub fn summarize(rows: &[AuditRow], principal: Option<&str>) -> Vec<PrincipalDenials> {
    let mut by: BTreeMap<(String, String), ActionDenials> = BTreeMap::new();
    for r in rows {
        if let Ok(ev) = serde_json::from_str::<Value>(&r.body) {
            fold(&mut by, &ev, principal);
        }
    }
    let mut out: Vec<PrincipalDenials> = Vec::new();
    for ((p, _), a) in by {
        match out.last_mut() {
            Some(last) if last.principal == p => last.actions.push(a),
            _ => out.push(PrincipalDenials {
                principal: p,
                actions: vec![a],
            }),
        }
    }
    out
}

impl Keycard {
    /// The denial report of `account` since `since_ms` (epoch ms).
    pub async fn denials(
        &self,
        account: &str,
        principal: Option<&str>,
        since_ms: i64,
    ) -> crate::Result<Vec<PrincipalDenials>> {
        let (rows, _) = self.audit_window(account, since_ms, None).await?;
        Ok(summarize(&rows, principal))
    }

    /// The audit rows of `account` from `start_ms` to `end_ms` (epoch ms),
    /// newest first, at most [`MAX_EVENTS`], and whether none was left out.
    /// Read by the denial report and by policy generation.
    pub(crate) async fn audit_window(
        &self,
        account: &str,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> crate::Result<(Vec<AuditRow>, bool)> {
        self.audit.flush().await;
        let mut rows = Vec::new();
        let mut before = None;
        while rows.len() < MAX_EVENTS {
            let page = self
                .store()
                .query_audit(&AuditQuery {
                    account: Some(account.to_string()),
                    start_ms: Some(start_ms),
                    end_ms,
                    before_seq: before,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else {
                return Ok((rows, true));
            };
            before = Some(last.seq);
            rows.extend(page);
        }
        Ok((rows, false))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An audit row carrying `body`, for tests that read events.
    pub(crate) fn row(body: Value) -> AuditRow {
        AuditRow {
            seq: 0,
            event_id: String::new(),
            event_time_ms: 0,
            event_name: String::new(),
            event_source: String::new(),
            username: String::new(),
            access_key_id: String::new(),
            account: String::new(),
            resource_names: Vec::new(),
            read_only: false,
            body: body.to_string(),
        }
    }

    fn event(arn: &str, t: &str, decisions: Value) -> AuditRow {
        row(serde_json::json!({
            "userIdentity": {"arn": arn},
            "eventTime": t,
            "eventName": "GetObject",
            "keycardAuthorization": decisions,
        }))
    }

    #[test]
    fn groups_denials_and_would_be_denials() {
        let app = "arn:aws:sts::123456789012:assumed-role/App/i-1";
        let rows = vec![
            event(
                app,
                "2026-01-02T00:00:00Z",
                serde_json::json!([
                    {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "decision": "ImplicitDeny",
                     "matchedStatements": [], "missing": ["identity-based policy"], "overriddenBy": SOFT,
                     "missingContextKeys": ["aws:SourceVpc"]},
                ]),
            ),
            event(
                app,
                "2026-01-01T00:00:00Z",
                serde_json::json!([
                    {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/j", "decision": "ExplicitDeny",
                     "matchedStatements": [{"policyId": "p", "sid": "NoJ", "effect": "Deny"}]},
                    {"action": "s3:ListBucket", "resource": "arn:aws:s3:::b", "decision": "Allow",
                     "matchedStatements": []},
                ]),
            ),
            event(
                "arn:aws:iam::123456789012:user/u",
                "2026-01-01T00:00:00Z",
                serde_json::json!([
                    {"action": "iam:ListUsers", "resource": "*", "decision": "ImplicitDeny", "matchedStatements": []},
                ]),
            ),
        ];
        let all = summarize(&rows, None);
        assert_eq!(all.len(), 2);
        let mine = summarize(&rows, Some(app));
        assert_eq!(mine.len(), 1);
        let a = &mine[0].actions;
        assert_eq!(a.len(), 1, "the allowed ListBucket is not a denial");
        assert_eq!((a[0].denied, a[0].would_be_denied), (1, 1));
        assert_eq!(a[0].decisions.get("ExplicitDeny"), Some(&1));
        assert!(a[0].denying_statements.contains("p#NoJ"));
        assert!(a[0].not_allowed_by.contains("identity-based policy"));
        assert!(a[0].missing_context_keys.contains("aws:SourceVpc"));
        assert_eq!(a[0].first_seen, "2026-01-01T00:00:00Z");
        assert_eq!(a[0].last_seen, "2026-01-02T00:00:00Z");
        assert_eq!(a[0].resources.len(), 2);
    }
}
