//! The audit trail's promises at the services level: `record` resolves once
//! the event is committed, a failing store makes it fail (the server then
//! answers 503), the bounded queue loses nothing under pressure, and a
//! mutation commits its request's draft event in the same transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use keycard_services::audit::{
    AuditUnavailable, EventInput, HIDDEN, PendingEvent, SENSITIVE_DATA_REMOVED, redact,
    with_pending,
};
use keycard_services::auth::Caller;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard, ServiceError};
use keycard_store::{AuditQuery, AuditRow, Op, Record, SqliteStore, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// A SQLite store that can be made to fail, or to hold audit appends until
/// the test lets them through.
struct TestStore {
    inner: SqliteStore,
    fail: AtomicBool,
    /// Only audit appends fail (commits with changes go through).
    fail_appends: AtomicBool,
    gate: Option<Arc<Semaphore>>,
    append_started: Notify,
}

impl TestStore {
    async fn new(gate: Option<Arc<Semaphore>>) -> Arc<TestStore> {
        Arc::new(TestStore {
            inner: SqliteStore::memory().await.unwrap(),
            fail: AtomicBool::new(false),
            fail_appends: AtomicBool::new(false),
            gate,
            append_started: Notify::new(),
        })
    }

    fn check(&self) -> keycard_store::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for TestStore {
    async fn load_all(&self) -> keycard_store::Result<Vec<Record>> {
        self.inner.load_all().await
    }
    async fn load_kind(&self, kind: &str) -> keycard_store::Result<Vec<Record>> {
        self.inner.load_kind(kind).await
    }
    async fn commit(&self, ops: &[Op], audit: &[AuditRow]) -> keycard_store::Result<()> {
        self.check()?;
        self.inner.commit(ops, audit).await
    }
    async fn append_audit(&self, rows: &[AuditRow]) -> keycard_store::Result<()> {
        self.append_started.notify_one();
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        self.check()?;
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("audit partition unavailable".into()));
        }
        self.inner.append_audit(rows).await
    }
    async fn query_audit(&self, q: &AuditQuery) -> keycard_store::Result<Vec<AuditRow>> {
        self.inner.query_audit(q).await
    }
    async fn clear_audit(&self) -> keycard_store::Result<()> {
        self.inner.clear_audit().await
    }
    async fn get_meta(&self, key: &str) -> keycard_store::Result<Option<Vec<u8>>> {
        self.inner.get_meta(key).await
    }
    async fn put_meta(&self, key: &str, value: &[u8]) -> keycard_store::Result<()> {
        self.inner.put_meta(key, value).await
    }
    async fn list_meta(&self, prefix: &str) -> keycard_store::Result<Vec<(String, Vec<u8>)>> {
        self.inner.list_meta(prefix).await
    }
}

async fn keycard(store: Arc<TestStore>, queue: usize) -> Arc<Keycard> {
    let dir = std::env::temp_dir().join(format!("keycard-audit-{}", uuid::Uuid::new_v4()));
    let mut config = Config::new(&dir);
    config.audit_queue = queue;
    Keycard::open(config, store).await.unwrap()
}

fn event<'a>(caller: &'a Caller, name: &'a str, request_id: &'a str) -> EventInput<'a> {
    EventInput {
        caller: Some(caller),
        event_source: "iam.amazonaws.com",
        event_name: name,
        region: "us-east-1",
        source_ip: "127.0.0.1",
        user_agent: "test",
        request_parameters: json!({"userName": "alice"}),
        response_elements: Value::Null,
        error_code: None,
        error_message: None,
        request_id,
        read_only: false,
        resources: vec![(
            "arn:aws:iam::123456789012:user/alice".into(),
            "AWS::IAM::User".into(),
        )],
        decided: &[],
        data_event: false,
        recipient_account: DEFAULT_ACCOUNT,
        instance_credentials: None,
    }
}

async fn events_of(store: &TestStore, request_id: &str) -> Vec<AuditRow> {
    store
        .query_audit(&AuditQuery {
            account: Some(DEFAULT_ACCOUNT.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.body.contains(&format!("\"requestID\":\"{request_id}\"")))
        .collect()
}

fn root() -> Caller {
    Caller::root(DEFAULT_ACCOUNT, "AKIAEXAMPLE")
}

#[tokio::test]
async fn record_resolves_only_after_the_commit() {
    let gate = Arc::new(Semaphore::new(0));
    let store = TestStore::new(Some(gate.clone())).await;
    let kc = keycard(store.clone(), 16).await;
    let caller = root();
    let recording = tokio::spawn(kc.audit.record(event(&caller, "GetUser", "r-1")));
    // The writer has the event and is committing it: not resolved yet.
    store.append_started.notified().await;
    assert!(!recording.is_finished());
    assert!(events_of(&store, "r-1").await.is_empty());
    gate.add_permits(1);
    recording.await.unwrap().unwrap();
    let rows = events_of(&store, "r-1").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].account, DEFAULT_ACCOUNT);
    assert_eq!(rows[0].event_name, "GetUser");
}

#[tokio::test]
async fn a_failing_store_fails_the_request_closed() {
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 16).await;
    let caller = root();
    store.fail.store(true, Ordering::SeqCst);
    let err = kc
        .audit
        .record(event(&caller, "GetUser", "r-fail"))
        .await
        .unwrap_err();
    assert_eq!(err, AuditUnavailable);
    let se = ServiceError::from(err);
    assert_eq!((se.code(), se.status()), ("ServiceUnavailable", 503));
    // The store recovers: so does recording.
    store.fail.store(false, Ordering::SeqCst);
    kc.audit
        .record(event(&caller, "GetUser", "r-ok"))
        .await
        .unwrap();
    assert!(events_of(&store, "r-fail").await.is_empty());
    assert_eq!(events_of(&store, "r-ok").await.len(), 1);
}

#[tokio::test]
async fn a_full_queue_waits_and_loses_nothing() {
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 1).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let kc = kc.clone();
        tasks.push(tokio::spawn(async move {
            let caller = root();
            let rid = format!("bp-{i}");
            kc.audit.record(event(&caller, "GetUser", &rid)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = store
        .query_audit(&AuditQuery {
            account: Some(DEFAULT_ACCOUNT.into()),
            event_name: Some("GetUser".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 300);
}

#[tokio::test]
async fn a_mutation_commits_its_draft_event_and_the_final_event_replaces_it() {
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 16).await;
    let caller = root();
    let pending = PendingEvent::new(event(&caller, "CreateUser", "r-create"));
    with_pending(
        pending.clone(),
        kc.create_user(DEFAULT_ACCOUNT, "alice", "/", vec![], None),
    )
    .await
    .unwrap();
    // Committed with the user, before any `record`: a crash here keeps it.
    let rows = events_of(&store, "r-create").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id, pending.event_id());
    assert!(rows[0].body.contains("\"keycardOutcome\":\"Pending\""));
    assert!(store.load_kind("user").await.unwrap().len() == 1);
    let mut fin = event(&caller, "CreateUser", "r-create");
    fin.response_elements = json!({"user": {"userName": "alice"}});
    kc.audit.record_final(&pending, fin).await.unwrap();
    let rows = events_of(&store, "r-create").await;
    assert_eq!(rows.len(), 1, "the final event replaced the draft");
    assert_eq!(rows[0].event_id, pending.event_id());
    assert!(!rows[0].body.contains("Pending"));
    assert!(rows[0].body.contains("\"responseElements\":{\"user\""));
    // Outside `with_pending`, a mutation writes no event.
    kc.create_user(DEFAULT_ACCOUNT, "bob", "/", vec![], None)
        .await
        .unwrap();
    let all = store
        .query_audit(&AuditQuery {
            account: Some(DEFAULT_ACCOUNT.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn a_failed_mutation_commits_neither_change_nor_draft() {
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 16).await;
    let caller = root();
    let pending = PendingEvent::new(event(&caller, "CreateUser", "r-lost"));
    store.fail.store(true, Ordering::SeqCst);
    let out = with_pending(
        pending,
        kc.create_user(DEFAULT_ACCOUNT, "carol", "/", vec![], None),
    )
    .await;
    assert!(out.is_err());
    store.fail.store(false, Ordering::SeqCst);
    assert!(events_of(&store, "r-lost").await.is_empty());
    assert!(kc.state().user(DEFAULT_ACCOUNT, "carol").is_none());
}

#[tokio::test]
async fn key_ids_are_attributed_to_their_account() {
    let store = TestStore::new(None).await;
    let kc = keycard(store, 16).await;
    let (acct, key, _secret) = kc.create_account(Some("210987654321")).await.unwrap();
    assert_eq!(kc.key_account(&key, None).as_deref(), Some(acct.as_str()));
    assert_eq!(kc.key_account("AKIAUNKNOWNKEY000000", None), None);
    let session = kc
        .get_session_token(&Caller::root(&acct, &key), None)
        .unwrap();
    assert_eq!(
        kc.key_account(&session.access_key_id, Some(&session.session_token))
            .as_deref(),
        Some(acct.as_str())
    );
    // A token of another key id, or none, attributes nothing.
    assert_eq!(
        kc.key_account("ASIAOTHERKEY00000000", Some(&session.session_token)),
        None
    );
    assert_eq!(kc.key_account(&session.access_key_id, None), None);
    assert_eq!(
        kc.key_account(&session.access_key_id, Some("garbage")),
        None
    );
}

#[test]
fn redaction_follows_cloudtrail() {
    let mut v = json!({
        "userData": "IyEvYmluL3NoCg==",
        "UserData": "IyEvYmluL3NoCg==",
        "password": "p1", "newPassword": "p2", "oldPassword": "p3",
        "privateKey": "-----BEGIN RSA PRIVATE KEY-----",
        "credentials": {"accessKeyId": "ASIAX", "secretAccessKey": "s", "sessionToken": "t"},
        "policyDocument": "{\"Statement\":[]}",
        "list": [{"SecretAccessKey": "s2"}],
    });
    redact(&mut v);
    assert_eq!(v["userData"], SENSITIVE_DATA_REMOVED);
    assert_eq!(v["UserData"], SENSITIVE_DATA_REMOVED);
    for k in ["password", "newPassword", "oldPassword", "privateKey"] {
        assert_eq!(v[k], HIDDEN, "{k}");
    }
    assert_eq!(v["credentials"]["secretAccessKey"], HIDDEN);
    assert_eq!(v["credentials"]["sessionToken"], HIDDEN);
    assert_eq!(v["credentials"]["accessKeyId"], "ASIAX");
    assert_eq!(v["list"][0]["SecretAccessKey"], HIDDEN);
    // CloudTrail records policy documents as they are.
    assert_eq!(v["policyDocument"], "{\"Statement\":[]}");
}

/// An instance with a role EC2 may assume, launched through the services.
async fn instance_with_role(kc: &Keycard) -> String {
    use keycard_services::ec2::{ProfileRef, RunInput};
    use keycard_services::iam::NewRole;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    kc.create_role(
        DEFAULT_ACCOUNT,
        NewRole {
            name: "r".into(),
            path: "/".into(),
            trust: trust.into(),
            description: None,
            max_session_duration: None,
            tags: Vec::new(),
            boundary: None,
        },
    )
    .await
    .unwrap();
    kc.create_instance_profile(DEFAULT_ACCOUNT, "p", "/", Vec::new())
        .await
        .unwrap();
    kc.add_role_to_instance_profile(DEFAULT_ACCOUNT, "p", "r")
        .await
        .unwrap();
    let input = RunInput {
        image_id: "ami-0abcdef1234567890".into(),
        min_count: 1,
        max_count: 1,
        profile: Some(ProfileRef::Name("p".into())),
        ..Default::default()
    };
    let (_, instances) = kc
        .run_instances(DEFAULT_ACCOUNT, "us-east-1", input)
        .await
        .unwrap();
    instances[0].id.clone()
}

#[tokio::test]
async fn instance_credentials_wait_for_their_issue_event() {
    use keycard_services::delivery::{Delivery, RoleCredentials, delivered};
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 16).await;
    let id = instance_with_role(&kc).await;
    // A working trail: the set is served and its AssumeRole event is
    // already in the store when `delivered` returns.
    let out = delivered(|| kc.instance_credentials(&id, Delivery::ImdsV2))
        .await
        .unwrap();
    assert!(matches!(out, RoleCredentials::Issued { .. }));
    let rows = store
        .query_audit(&AuditQuery {
            account: Some(DEFAULT_ACCOUNT.into()),
            event_name: Some("AssumeRole".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // A failing trail: no credentials are answered.
    kc.forget_instance_credentials(&id);
    store.fail.store(true, Ordering::SeqCst);
    let err = delivered(|| kc.instance_credentials(&id, Delivery::ImdsV1)).await;
    assert_eq!(err.err(), Some(AuditUnavailable));
}

#[tokio::test]
async fn a_committed_write_is_answered_when_only_its_final_event_fails() {
    let store = TestStore::new(None).await;
    let kc = keycard(store.clone(), 16).await;
    let caller = root();
    store.fail_appends.store(true, Ordering::SeqCst);
    // Nothing committed: still fail closed.
    let idle = PendingEvent::new(event(&caller, "CreateUser", "r-idle"));
    let refused = kc
        .audit
        .record_final(&idle, event(&caller, "CreateUser", "r-idle"))
        .await;
    assert_eq!(refused, Err(AuditUnavailable));
    // Committed with its draft: answered (a refusal would make the
    // client's retry meet its own user), the draft standing for it ...
    let pending = PendingEvent::new(event(&caller, "CreateUser", "r-done"));
    with_pending(
        pending.clone(),
        kc.create_user(DEFAULT_ACCOUNT, "carol", "/", vec![], None),
    )
    .await
    .unwrap();
    kc.audit
        .record_final(&pending, event(&caller, "CreateUser", "r-done"))
        .await
        .unwrap();
    let rows = events_of(&store, "r-done").await;
    assert!(rows[0].body.contains("\"keycardOutcome\":\"Pending\""));
    // ... until the store takes the final event.
    store.fail_appends.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while events_of(&store, "r-done").await[0]
        .body
        .contains("Pending")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "final event never stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
