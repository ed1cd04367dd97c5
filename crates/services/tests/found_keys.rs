//! `Keycard::found_key`: what keycard answers about an access key id found
//! in code (live, deactivated, deleted — also after a restart — or unknown).

use std::sync::Arc;

use keycard_services::keyinfo::FoundKeyStatus;
use keycard_services::model::KeyStatus;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard};
use keycard_store::{SqliteStore, Store};

async fn open(dir: &std::path::Path, store: Arc<dyn Store>) -> Arc<Keycard> {
    Keycard::open(Config::new(dir), store).await.unwrap()
}

#[tokio::test]
async fn live_inactive_deleted_and_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("keycard-found-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("k.db")).await.unwrap());
    let kc = open(&dir, store.clone()).await;
    let a = DEFAULT_ACCOUNT;
    kc.create_user(a, "alice", "/dev/", vec![], None)
        .await
        .unwrap();
    let (k1, _) = kc.create_access_key(a, Some("alice")).await.unwrap();
    let (k2, _) = kc.create_access_key(a, Some("alice")).await.unwrap();

    let f = kc.found_key(&k1.id).await.unwrap();
    assert_eq!(f.status, FoundKeyStatus::Active);
    assert_eq!(
        f.owner_arn.as_deref(),
        Some(format!("arn:aws:iam::{a}:user/dev/alice").as_str())
    );
    assert_eq!(f.account.as_deref(), Some(a));

    kc.update_access_key(a, Some("alice"), &k2.id, KeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        kc.found_key(&k2.id).await.unwrap().status,
        FoundKeyStatus::Inactive
    );

    kc.delete_access_key(a, Some("alice"), &k1.id)
        .await
        .unwrap();
    let f = kc.found_key(&k1.id).await.unwrap();
    assert_eq!(f.status, FoundKeyStatus::Deleted);
    assert!(f.deleted_date.is_some());

    // Remembered across a restart.
    drop(kc);
    let kc = open(&dir, store).await;
    let f = kc.found_key(&k1.id).await.unwrap();
    assert_eq!(f.status, FoundKeyStatus::Deleted);
    assert_eq!(
        f.owner_arn.as_deref(),
        Some(format!("arn:aws:iam::{a}:user/dev/alice").as_str())
    );

    let f = kc.found_key("AKIAZZZZZZZZZZZZZZZZ").await.unwrap();
    assert_eq!(f.status, FoundKeyStatus::Unknown);
    assert_eq!(f.owner_arn, None);
    let _ = std::fs::remove_dir_all(&dir);
}
