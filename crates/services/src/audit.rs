//! The audit trail: every request, allowed or denied, as a CloudTrail
//! event. `record` hands the event to one writer task through a bounded
//! queue and resolves once the transaction holding it has committed, so a
//! response released after `record` implies a stored event. The writer
//! commits whatever accumulated while it was busy in one transaction (group
//! commit): no timer, and the batch grows with the load.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keycard_policy::Decision;
use keycard_store::{AuditRow, Store};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Caller, CallerKind, Decided};
use crate::sts::iso8601;

/// Most events written in one transaction.
const MAX_BATCH: usize = 2000;

/// Events waiting for the writer before `record` waits for room (the
/// backpressure bound; each request has at most one event in the queue).
pub const DEFAULT_QUEUE: usize = 4096;

/// Value CloudTrail puts in place of a secret request or response field.
pub const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";
/// Value EC2's CloudTrail events put in place of user data.
pub const SENSITIVE_DATA_REMOVED: &str = "<sensitiveDataRemoved>";

/// The audit store failed (or its writer is gone): the request must not be
/// answered as if it were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail could not record the request")]
pub struct AuditUnavailable;

type Done = oneshot::Sender<Result<(), AuditUnavailable>>;

enum Msg {
    Event(Box<AuditRow>, Done),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
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
    /// Instance credentials used away from their instance (keycard's own
    /// field; CloudTrail has none).
    pub instance_credentials: Option<Value>,
}

/// Keys whose values never enter an audit record (compared in lower
/// case; CloudTrail's camelCase and the APIs' PascalCase both match).
/// Policy documents are not among them: CloudTrail records those.
const SECRET_KEYS: &[&str] = &[
    "secretaccesskey",
    "sessiontoken",
    "token",
    "password",
    "newpassword",
    "oldpassword",
    "privatekey",
    "keymaterial",
    "servicepassword",
    "servicecredentialsecret",
    "x-amz-security-token",
    "authorization",
    "signature",
    "x-amz-signature",
    "webidentitytoken",
    "samlassertion",
];

/// Keys EC2 records as `<sensitiveDataRemoved>` (RunInstances,
/// ModifyInstanceAttribute, launch templates).
const REMOVED_KEYS: &[&str] = &["userdata"];

/// Replace secret-bearing fields anywhere in a JSON value, as CloudTrail does.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let is = |keys: &[&str]| keys.iter().any(|s| k.eq_ignore_ascii_case(s));
                if is(SECRET_KEYS) {
                    *val = Value::String(HIDDEN.into());
                } else if is(REMOVED_KEYS) {
                    *val = Value::String(SENSITIVE_DATA_REMOVED.into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `userIdentity` in CloudTrail's field order, serialized from borrows
/// (it was a `serde_json` map built per event: an allocation per key).
#[derive(serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_context: Option<SessionContext<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    session_issuer: Option<SessionIssuer<'a>>,
    attributes: SessionAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ec2_role_delivery: Option<&'a str>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionIssuer<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    principal_id: &'a str,
    arn: &'a str,
    account_id: &'a str,
    user_name: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionAttributes {
    creation_date: String,
    /// CloudTrail writes it as a string.
    mfa_authenticated: &'static str,
}

fn user_identity(c: Option<&Caller>) -> Identity<'_> {
    let Some(c) = c else {
        return Identity {
            kind: "AWSAccount",
            principal_id: Some(String::new()),
            account_id: Some("anonymous"),
            ..Identity::default()
        };
    };
    if c.principal.kind == keycard_policy::PrincipalKind::Service {
        return Identity {
            kind: "AWSService",
            invoked_by: Some(&c.principal.arn),
            ..Identity::default()
        };
    }
    if matches!(c.kind, CallerKind::Anonymous) && !c.access_key_id.is_empty() {
        // A key id claimed by a request that failed authentication.
        return Identity {
            kind: "Unknown",
            account_id: Some(&c.account),
            access_key_id: Some(&c.access_key_id),
            ..Identity::default()
        };
    }
    if let CallerKind::WebIdentity(w) = &c.kind {
        // As CloudTrail records AssumeRoleWithWebIdentity.
        return Identity {
            kind: c.identity_type(),
            principal_id: Some(c.user_id()),
            user_name: Some(&w.sub),
            identity_provider: Some(&w.provider),
            ..Identity::default()
        };
    }
    let mut id = Identity {
        kind: c.identity_type(),
        principal_id: Some(c.user_id()),
        arn: Some(&c.principal.arn),
        account_id: Some(&c.account),
        access_key_id: (!c.access_key_id.is_empty()).then_some(c.access_key_id.as_str()),
        ..Identity::default()
    };
    match &c.kind {
        CallerKind::User { name, .. } => id.user_name = Some(name),
        CallerKind::Session(s) => {
            let cl = &s.claims;
            id.user_name = cl.user.as_deref();
            id.session_context = Some(SessionContext {
                session_issuer: cl.role.as_ref().map(|r| SessionIssuer {
                    kind: "Role",
                    principal_id: &r.id,
                    arn: &r.arn,
                    account_id: &cl.account,
                    user_name: &r.name,
                }),
                attributes: SessionAttributes {
                    creation_date: iso8601(cl.issued),
                    mfa_authenticated: if cl.mfa { "true" } else { "false" },
                },
                source_identity: cl.source_identity.as_deref(),
                ec2_role_delivery: cl.instance.as_ref().map(|i| i.delivery.as_str()),
            });
        }
        _ => {}
    }
    id
}

/// A value serialized as its `Debug` text, without an intermediate String.
struct DebugStr<'a, T>(&'a T);

impl<T: std::fmt::Debug> serde::Serialize for DebugStr<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:?}", self.0))
    }
}

/// One decided check as the event's `keycardAuthorization` lists it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionRecord<'a> {
    action: &'a str,
    resource: &'a str,
    decision: &'static str,
    matched_statements: Vec<MatchedRecord<'a>>,
    /// On an implicit deny: the policy kinds that did not allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    missing_context_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    overridden_by: Option<&'static str>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchedRecord<'a> {
    policy_id: &'a str,
    policy_type: DebugStr<'a, keycard_policy::PolicyKind>,
    sid: Option<&'a str>,
    index: usize,
    effect: DebugStr<'a, keycard_policy::Effect>,
}

fn decision_record(d: &Decided) -> DecisionRecord<'_> {
    let e = &d.evaluation;
    DecisionRecord {
        action: &d.action,
        resource: &d.resource,
        decision: e.decision.as_str(),
        matched_statements: e
            .matched
            .iter()
            .map(|m| MatchedRecord {
                policy_id: &m.policy_id,
                policy_type: DebugStr(&m.kind),
                sid: m.sid.as_deref(),
                index: m.index,
                effect: DebugStr(&m.effect),
            })
            .collect(),
        missing: (e.decision == Decision::ImplicitDeny)
            .then(|| e.missing.iter().map(|k| k.description()).collect()),
        missing_context_keys: &d.missing_context,
        overridden_by: d.overridden_by,
    }
}

/// A CloudTrail event record, in CloudTrail's field order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    event_version: &'static str,
    user_identity: Identity<'a>,
    event_time: String,
    event_source: &'a str,
    event_name: &'a str,
    aws_region: &'a str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: &'a str,
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    request_parameters: Value,
    response_elements: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_event_data: Option<Value>,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<EventResource<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    event_category: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keycard_authorization: Vec<DecisionRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keycard_instance_credentials: Option<Value>,
}

#[derive(serde::Serialize)]
struct EventResource<'a> {
    #[serde(rename = "ARN")]
    arn: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "accountId")]
    account_id: &'a str,
}

/// Build the stored row of an event. `event_id` is given for a request
/// whose draft was written already; `pending` marks a draft.
fn build_row(ev: EventInput<'_>, event_id: Option<String>, pending: bool) -> AuditRow {
    let now = time::OffsetDateTime::now_utc();
    let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    // Time-ordered (UUIDv7): the unique event-id index grows at its end
    // instead of touching a random page per event.
    let event_id = event_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut params = ev.request_parameters;
    redact(&mut params);
    let mut response = ev.response_elements;
    redact(&mut response);
    let body = Body {
        event_version: "1.09",
        user_identity: user_identity(ev.caller),
        event_time: iso8601(now.unix_timestamp()),
        event_source: ev.event_source,
        event_name: ev.event_name,
        aws_region: ev.region,
        source_ip_address: ev.source_ip,
        user_agent: ev.user_agent,
        error_code: ev.error_code,
        // A ConsoleLogin failure has a message and no code, as in CloudTrail.
        error_message: ev.error_message.or(ev.error_code.map(|_| "")),
        request_parameters: params,
        response_elements: response,
        // What a crash between the mutation and the final event leaves.
        additional_event_data: pending.then(|| json!({"keycardOutcome": "Pending"})),
        request_id: ev.request_id,
        event_id: &event_id,
        read_only: ev.read_only,
        resources: ev
            .resources
            .iter()
            .map(|(arn, t)| EventResource {
                arn,
                kind: t,
                account_id: ev.recipient_account,
            })
            .collect(),
        event_type: "AwsApiCall",
        management_event: !ev.data_event,
        recipient_account_id: ev.recipient_account,
        event_category: if ev.data_event { "Data" } else { "Management" },
        keycard_authorization: ev.decided.iter().map(decision_record).collect(),
        keycard_instance_credentials: ev.instance_credentials,
    };
    // Serializing borrowed fields straight to text: no intermediate map.
    let body = serde_json::to_string(&body).unwrap_or_default();
    AuditRow {
        seq: 0,
        event_id,
        event_time_ms: ms,
        event_name: ev.event_name.into(),
        event_source: ev.event_source.into(),
        username: ev.caller.map(|c| c.username()).unwrap_or_default(),
        access_key_id: ev
            .caller
            .map(|c| c.access_key_id.clone())
            .unwrap_or_default(),
        account: ev.recipient_account.into(),
        resource_names: resource_names(&ev.resources),
        read_only: ev.read_only,
        body,
    }
}

/// Each resource's ARN and its last path or colon segment, searchable.
fn resource_names(resources: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (arn, _) in resources {
        names.push(arn.clone());
        if let Some(last) = arn.rsplit(['/', ':']).next()
            && last != arn
            && !last.is_empty()
        {
            names.push(last.to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The writer: wait for the first message, yield once so that requests
/// already running can queue theirs, take everything queued (up to
/// `MAX_BATCH`), commit it in one write, answer every waiter.
/// What arrives during a commit forms the next batch.
async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs: Vec<Msg> = Vec::new();
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut done: Vec<Done> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while rx.recv_many(&mut msgs, MAX_BATCH).await > 0 {
        // Let the requests that are ready run first: their events join
        // this write. Without it the writer, woken by each event on an
        // idle worker, wrote one event per system call.
        tokio::task::yield_now().await;
        while msgs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        for m in msgs.drain(..) {
            match m {
                Msg::Event(row, d) => {
                    rows.push(*row);
                    done.push(d);
                }
                Msg::Flush(f) => flushes.push(f),
            }
        }
        if !rows.is_empty() {
            let result = store.append_audit(&rows).await.map_err(|e| {
                tracing::error!(error = %e, events = rows.len(), "writing audit events failed");
                AuditUnavailable
            });
            for d in done.drain(..) {
                let _ = d.send(result);
            }
            rows.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
        // Don't keep a backlog's worth of capacity around.
        msgs.shrink_to(MAX_BATCH);
        rows.shrink_to(MAX_BATCH);
        done.shrink_to(MAX_BATCH);
    }
}

impl AuditLog {
    /// Start the writer task with the default queue bound.
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        Self::start_with(store, DEFAULT_QUEUE)
    }

    /// Start the writer task; at most `queue` events wait for it.
    pub fn start_with(store: Arc<dyn Store>, queue: usize) -> AuditLog {
        let (tx, rx) = mpsc::channel::<Msg>(queue.max(1));
        tokio::spawn(write_loop(store, rx));
        AuditLog { tx }
    }

    /// Record one event: resolves once it is committed, or with
    /// `AuditUnavailable` if it could not be (answer 503 then). The row is
    /// built before the future is returned, so the future borrows nothing.
    pub fn record(
        &self,
        ev: EventInput<'_>,
    ) -> impl Future<Output = Result<(), AuditUnavailable>> + Send + use<> {
        self.submit(build_row(ev, None, false))
    }

    /// Record the final event of a request whose draft is `pending`: it
    /// takes the draft's event id and replaces the draft in the store.
    ///
    /// When the request's changes already committed (with the draft), the
    /// call took effect: refusing it now would make the client's retry
    /// meet its own write (`EntityAlreadyExists`). So a final event the
    /// store cannot take yet is retried in the background (the draft
    /// records the call meanwhile) and the request is answered.
    pub fn record_final(
        &self,
        pending: &PendingEvent,
        ev: EventInput<'_>,
    ) -> impl Future<Output = Result<(), AuditUnavailable>> + Send + use<> {
        let row = build_row(ev, Some(pending.event_id().to_string()), false);
        let committed = pending.committed.clone();
        let tx = self.tx.clone();
        async move {
            let first = Self::submit_to(tx.clone(), row.clone()).await;
            if first.is_ok() || !committed.load(Ordering::SeqCst) {
                return first;
            }
            tracing::warn!(event_id = %row.event_id, "final audit event not stored yet: answering (the committed draft records the call) and retrying it");
            tokio::spawn(async move {
                for _ in 0..FINAL_RETRIES {
                    tokio::time::sleep(FINAL_RETRY_PERIOD).await;
                    if Self::submit_to(tx.clone(), row.clone()).await.is_ok() {
                        return;
                    }
                }
                tracing::error!(event_id = %row.event_id, "final audit event never stored: its draft (Pending) stays");
            });
            Ok(())
        }
    }

    fn submit(
        &self,
        row: AuditRow,
    ) -> impl Future<Output = Result<(), AuditUnavailable>> + Send + use<> {
        Self::submit_to(self.tx.clone(), row)
    }

    async fn submit_to(tx: mpsc::Sender<Msg>, row: AuditRow) -> Result<(), AuditUnavailable> {
        let (done, committed) = oneshot::channel();
        // Waits for room when the queue is full (backpressure).
        tx.send(Msg::Event(Box::new(row), done))
            .await
            .map_err(|_| AuditUnavailable)?;
        committed.await.map_err(|_| AuditUnavailable)?
    }

    /// Wait until everything queued so far has been written (or failed).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A request's event before its outcome is known. Any mutation the request
/// commits (`Keycard::mutate` inside `with_pending`) writes this draft in
/// the same transaction, marked `additionalEventData.keycardOutcome =
/// "Pending"`; `AuditLog::record_final` later replaces it by event id. A
/// crash between the two still leaves the call's event next to its change.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    draft: Arc<AuditRow>,
    /// Set once a mutation committed the draft with its changes.
    committed: Arc<AtomicBool>,
}

impl PendingEvent {
    /// The draft of the event from what is known before the handler runs.
    pub fn new(ev: EventInput<'_>) -> PendingEvent {
        PendingEvent {
            draft: Arc::new(build_row(ev, None, true)),
            committed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The event id the draft and the final event share.
    pub fn event_id(&self) -> &str {
        &self.draft.event_id
    }

    /// The draft as it is stored.
    pub fn draft(&self) -> &AuditRow {
        &self.draft
    }
}

tokio::task_local! {
    static PENDING: PendingEvent;
}

/// Run `fut` with `pending` as the event of the request it serves: every
/// `Keycard::mutate` inside commits the draft with its changes.
pub async fn with_pending<F: Future>(pending: PendingEvent, fut: F) -> F::Output {
    PENDING.scope(pending, fut).await
}

/// The draft of the request being served, if the caller declared one.
pub fn pending_draft() -> Option<AuditRow> {
    PENDING.try_with(|p| p.draft().clone()).ok()
}

/// The request being served committed its draft with its changes.
pub(crate) fn draft_committed() {
    let _ = PENDING.try_with(|p| p.committed.store(true, Ordering::SeqCst));
}

/// How often, and how many times, a committed request's final event is
/// retried after the store refused it (about five minutes).
const FINAL_RETRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
const FINAL_RETRIES: u32 = 300;

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
