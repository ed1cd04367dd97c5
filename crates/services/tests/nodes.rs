//! Two keycards over one PostgreSQL store (issue 12): one applies what the
//! other wrote, and a write planned on a stale view is planned again on
//! the newer state instead of overwriting it. Needs `KEYCARD_TEST_PG`
//! (scripts/with-postgres.sh); `KEYCARD_SKIP_PG=1` skips.

use std::sync::Arc;

use keycard_proto::secret::SecretKey;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard, ServiceError};
use keycard_store::{PgStore, Store};
use sqlx::{AssertSqlSafe, Connection, Executor};

async fn fresh_url() -> Option<String> {
    let Ok(url) = std::env::var("KEYCARD_TEST_PG") else {
        if std::env::var("KEYCARD_SKIP_PG").as_deref() == Ok("1") {
            return None;
        }
        panic!("KEYCARD_TEST_PG is not set: run under scripts/with-postgres.sh");
    };
    let db = format!("kc_nodes_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    c.execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await
        .unwrap();
    c.close().await.unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{db}"))
}

async fn node(url: &str, master: &str) -> Arc<Keycard> {
    let dir = std::env::temp_dir().join(format!("keycard-node-{}", uuid::Uuid::new_v4()));
    let mut config = Config::new(dir);
    config.master_key_hex = Some(SecretKey::new(master.to_string()));
    let store: Arc<dyn Store> = Arc::new(PgStore::open(url).await.unwrap());
    Keycard::open(config, store).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_apply_each_others_writes_and_never_both_create() {
    let Some(url) = fresh_url().await else { return };
    let master = "11".repeat(32);
    let a = node(&url, &master).await;
    let b = node(&url, &master).await;
    b.sync().await.unwrap();

    a.create_user(DEFAULT_ACCOUNT, "alice", "/", vec![], None)
        .await
        .unwrap();
    assert!(b.state().user(DEFAULT_ACCOUNT, "alice").is_none());
    b.sync().await.unwrap();
    assert!(b.state().user(DEFAULT_ACCOUNT, "alice").is_some());
    assert_eq!(a.applied_seq(), b.applied_seq());

    // B has not seen bob: its plan would succeed, the commit conflicts, and
    // the plan on the newer state refuses.
    a.create_user(DEFAULT_ACCOUNT, "bob", "/", vec![], None)
        .await
        .unwrap();
    let again = b
        .create_user(DEFAULT_ACCOUNT, "bob", "/", vec![], None)
        .await;
    assert!(
        matches!(again, Err(ServiceError::EntityAlreadyExists(_))),
        "{again:?}"
    );
    assert!(b.state().user(DEFAULT_ACCOUNT, "bob").is_some());

    // A write on B after catching up goes through; A follows.
    b.create_user(DEFAULT_ACCOUNT, "carol", "/", vec![], None)
        .await
        .unwrap();
    a.sync().await.unwrap();
    assert!(a.state().user(DEFAULT_ACCOUNT, "carol").is_some());

    // Access keys arrive with their secrets (the shared master key).
    let (key, _) = a
        .create_access_key(DEFAULT_ACCOUNT, Some("alice"))
        .await
        .unwrap();
    let key_id = key.id.clone();
    b.sync().await.unwrap();
    assert!(b.state().secrets.contains_key(&key_id));
    a.delete_access_key(DEFAULT_ACCOUNT, Some("alice"), &key_id)
        .await
        .unwrap();
    b.sync().await.unwrap();
    assert!(!b.state().access_keys.contains_key(&key_id));
    assert!(!b.state().secrets.contains_key(&key_id));
    assert!(!b.is_stale());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_key_rotated_on_one_node_opens_sessions_on_the_other() {
    let Some(url) = fresh_url().await else { return };
    let master = "22".repeat(32);
    let a = node(&url, &master).await;
    let b = node(&url, &master).await;
    b.sync().await.unwrap();
    let root = keycard_services::auth::Caller::root(DEFAULT_ACCOUNT, "AKIAROOT");
    let before = a.get_session_token(&root, None).unwrap();
    assert!(b.open_session(&before.session_token).is_ok());

    // A rotates: a token sealed with the new key does not open on B until
    // B follows the feed, then it does, and older tokens still open.
    a.rotate_token_key().await.unwrap();
    let after = a.get_session_token(&root, None).unwrap();
    assert!(b.open_session(&after.session_token).is_err());
    b.sync().await.unwrap();
    assert!(b.open_session(&after.session_token).is_ok());
    assert!(b.open_session(&before.session_token).is_ok());
    // And B's own rotation reaches A the same way.
    b.rotate_token_key().await.unwrap();
    let from_b = b.get_session_token(&root, None).unwrap();
    a.sync().await.unwrap();
    assert!(a.open_session(&from_b.session_token).is_ok());
}
