//! The audit trail: every request, allowed or denied, as a CloudTrail
//! event. Events go through a channel to one writer task that commits them
//! in batches, so recording costs the request path almost nothing.

use std::sync::Arc;
use std::time::Duration;

use keycard_policy::Decision;
use keycard_store::{AuditRow, Store};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Caller, CallerKind, Decided};
use crate::sts::iso8601;

/// Most events written in one transaction.
const MAX_BATCH: usize = 2000;

enum Msg {
    Event(Box<AuditRow>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Msg>,
}

/// What the server knows about a finished request.
pub struct EventInput<'a> {
    pub caller: Option<&'a Caller>,
    pub event_source: &'a str,
    pub event_name: &'a str,
    pub region: &'a str,
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    pub request_parameters: Value,
    pub response_elements: Value,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub request_id: &'a str,
    pub read_only: bool,
    /// (ARN or name, type) of the resources touched.
    pub resources: Vec<(String, String)>,
    /// Every authorization decided for the call.
    pub decided: &'a [Decided],
    /// CloudTrail data event (object-level S3) rather than management.
    pub data_event: bool,
    pub recipient_account: &'a str,
}

/// Keys whose values never enter an audit record.
const SECRET_KEYS: &[&str] = &[
    "secretaccesskey",
    "sessiontoken",
    "token",
    "password",
    "newpassword",
    "oldpassword",
    "privatekey",
    "x-amz-security-token",
    "authorization",
    "signature",
    "x-amz-signature",
];

/// Remove secret-bearing fields anywhere in a JSON value.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                    *val = Value::String("HIDDEN_DUE_TO_SECURITY_REASONS".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn user_identity(c: Option<&Caller>) -> Value {
    let Some(c) = c else {
        return json!({"type": "AWSAccount", "principalId": "", "accountId": "anonymous"});
    };
    if c.principal.kind == keycard_policy::PrincipalKind::Service {
        return json!({"type": "AWSService", "invokedBy": c.principal.arn});
    }
    let mut m = Map::new();
    m.insert("type".into(), c.identity_type().into());
    m.insert("principalId".into(), c.user_id().into());
    m.insert("arn".into(), c.principal.arn.clone().into());
    m.insert("accountId".into(), c.account.clone().into());
    if !c.access_key_id.is_empty() {
        m.insert("accessKeyId".into(), c.access_key_id.clone().into());
    }
    match &c.kind {
        CallerKind::User { name, .. } => {
            m.insert("userName".into(), name.clone().into());
        }
        CallerKind::Session(s) => {
            let cl = &s.claims;
            let mut sc = Map::new();
            if let Some(r) = &cl.role {
                sc.insert(
                    "sessionIssuer".into(),
                    json!({"type": "Role", "principalId": r.id, "arn": r.arn,
                           "accountId": cl.account, "userName": r.name}),
                );
            }
            sc.insert(
                "attributes".into(),
                json!({"creationDate": iso8601(cl.issued), "mfaAuthenticated": "false"}),
            );
            if let Some(si) = &cl.source_identity {
                sc.insert("sourceIdentity".into(), si.clone().into());
            }
            if let Some(i) = &cl.instance {
                sc.insert("ec2RoleDelivery".into(), i.delivery.clone().into());
            }
            m.insert("sessionContext".into(), Value::Object(sc));
            if let Some(u) = &cl.user {
                m.insert("userName".into(), u.clone().into());
            }
        }
        _ => {}
    }
    Value::Object(m)
}

/// One decided check as the event's `keycardAuthorization` lists it.
fn decision_json(d: &Decided) -> Value {
    let e = &d.evaluation;
    let mut v = json!({
        "action": d.action,
        "resource": d.resource,
        "decision": e.decision.as_str(),
        "matchedStatements": e.matched.iter().map(|m| json!({
            "policyId": m.policy_id, "policyType": format!("{:?}", m.kind),
            "sid": m.sid, "index": m.index,
            "effect": format!("{:?}", m.effect),
        })).collect::<Vec<_>>(),
    });
    if e.decision == Decision::ImplicitDeny
        && let Some(m) = v.as_object_mut()
    {
        m.insert(
            "missing".into(),
            e.missing
                .iter()
                .map(|k| k.description())
                .collect::<Vec<_>>()
                .into(),
        );
    }
    if let (Some(o), Some(m)) = (d.overridden_by, v.as_object_mut()) {
        m.insert("overriddenBy".into(), o.into());
    }
    v
}

impl AuditLog {
    /// Start the writer task.
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let mut batch: Vec<AuditRow> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                let first = match rx.recv().await {
                    Some(m) => m,
                    None => break,
                };
                let take = |m: Msg, batch: &mut Vec<AuditRow>, waiters: &mut Vec<_>| match m {
                    Msg::Event(r) => batch.push(*r),
                    Msg::Flush(w) => waiters.push(w),
                };
                take(first, &mut batch, &mut waiters);
                // Gather what else is waiting, briefly, to write in bulk.
                let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
                while batch.len() < MAX_BATCH && waiters.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => take(m, &mut batch, &mut waiters),
                        _ => break,
                    }
                }
                while batch.len() < MAX_BATCH
                    && let Ok(m) = rx.try_recv()
                {
                    take(m, &mut batch, &mut waiters);
                }
                if !batch.is_empty() {
                    if let Err(e) = store.append_audit(&batch).await {
                        tracing::error!(error = %e, events = batch.len(), "writing audit events failed");
                    }
                    batch.clear();
                    // Don't keep a backlog's worth of capacity around.
                    batch.shrink_to(MAX_BATCH);
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        AuditLog { tx }
    }

    /// Record one event.
    pub fn record(&self, ev: EventInput<'_>) {
        let now = time::OffsetDateTime::now_utc();
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let event_id = uuid::Uuid::new_v4().to_string();
        let mut params = ev.request_parameters;
        redact(&mut params);
        let mut response = ev.response_elements;
        redact(&mut response);
        let mut body = Map::new();
        body.insert("eventVersion".into(), "1.09".into());
        body.insert("userIdentity".into(), user_identity(ev.caller));
        body.insert("eventTime".into(), iso8601(now.unix_timestamp()).into());
        body.insert("eventSource".into(), ev.event_source.into());
        body.insert("eventName".into(), ev.event_name.into());
        body.insert("awsRegion".into(), ev.region.into());
        body.insert("sourceIPAddress".into(), ev.source_ip.into());
        body.insert("userAgent".into(), ev.user_agent.into());
        if let Some(c) = ev.error_code {
            body.insert("errorCode".into(), c.into());
            body.insert(
                "errorMessage".into(),
                ev.error_message.unwrap_or_default().into(),
            );
        }
        body.insert(
            "requestParameters".into(),
            if params.is_null() {
                Value::Null
            } else {
                params
            },
        );
        body.insert("responseElements".into(), response);
        body.insert("requestID".into(), ev.request_id.into());
        body.insert("eventID".into(), event_id.clone().into());
        body.insert("readOnly".into(), ev.read_only.into());
        if !ev.resources.is_empty() {
            body.insert(
                "resources".into(),
                ev.resources
                    .iter()
                    .map(|(arn, t)| json!({"ARN": arn, "type": t, "accountId": ev.recipient_account}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        body.insert("eventType".into(), "AwsApiCall".into());
        body.insert("managementEvent".into(), (!ev.data_event).into());
        body.insert("recipientAccountId".into(), ev.recipient_account.into());
        body.insert(
            "eventCategory".into(),
            if ev.data_event { "Data" } else { "Management" }.into(),
        );
        if !ev.decided.is_empty() {
            body.insert(
                "keycardAuthorization".into(),
                ev.decided
                    .iter()
                    .map(decision_json)
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        let username = ev.caller.map(|c| c.username()).unwrap_or_default();
        let mut resource_names: Vec<String> = Vec::new();
        for (arn, _) in &ev.resources {
            resource_names.push(arn.clone());
            if let Some(last) = arn.rsplit(['/', ':']).next()
                && last != arn
                && !last.is_empty()
            {
                resource_names.push(last.to_string());
            }
        }
        resource_names.sort();
        resource_names.dedup();
        let row = AuditRow {
            seq: 0,
            event_id,
            event_time_ms: ms,
            event_name: ev.event_name.into(),
            event_source: ev.event_source.into(),
            username,
            access_key_id: ev
                .caller
                .map(|c| c.access_key_id.clone())
                .unwrap_or_default(),
            resource_names,
            read_only: ev.read_only,
            body: Value::Object(body).to_string(),
        };
        let _ = self.tx.send(Msg::Event(Box::new(row)));
    }

    /// Wait until everything recorded so far is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_nested_fields() {
        let mut v = json!({"userName": "a", "credentials": {"SecretAccessKey": "s", "SessionToken": "t", "AccessKeyId": "ASIA"}, "list": [{"Password": "p"}]});
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("\"s\"") && !s.contains("\"t\"") && !s.contains("\"p\""));
        assert!(s.contains("ASIA"));
    }
}
