//! One test suite for every `Store` backend. Each backend gets a module that
//! hands a fresh store to the shared checks.

use keycard_store::{AuditQuery, AuditRow, Op, SqliteStore, Store};

async fn records_roundtrip(s: &dyn Store) {
    s.commit(&[
        Op::put("user", "1/alice", "{\"a\":1}"),
        Op::put("user", "1/bob", "{}"),
    ])
    .await
    .unwrap();
    s.commit(&[Op::put("role", "1/r", "{}")]).await.unwrap();
    let all = s.load_all().await.unwrap();
    assert_eq!(all.len(), 3);
    let users = s.load_kind("user").await.unwrap();
    assert_eq!(
        users.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["1/alice", "1/bob"]
    );
    // Overwrite and delete.
    s.commit(&[
        Op::put("user", "1/alice", "{\"a\":2}"),
        Op::delete("user", "1/bob"),
    ])
    .await
    .unwrap();
    let users = s.load_kind("user").await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].value, "{\"a\":2}");
    s.commit(&[Op::DeleteKind {
        kind: "user".into(),
    }])
    .await
    .unwrap();
    assert!(s.load_kind("user").await.unwrap().is_empty());
    assert_eq!(s.load_kind("role").await.unwrap().len(), 1);
}

async fn meta_roundtrip(s: &dyn Store) {
    assert_eq!(s.get_meta("k").await.unwrap(), None);
    s.put_meta("k", b"v1").await.unwrap();
    s.put_meta("k", b"v2").await.unwrap();
    assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
}

fn ev(i: i64, name: &str, user: &str, res: &[&str]) -> AuditRow {
    AuditRow {
        event_id: format!("id-{i}"),
        event_time_ms: 1_000 * i,
        event_name: name.into(),
        event_source: "iam.amazonaws.com".into(),
        username: user.into(),
        access_key_id: format!("AKIA{i}"),
        resource_names: res.iter().map(|s| s.to_string()).collect(),
        read_only: name.starts_with("Get"),
        body: format!("{{\"n\":{i}}}"),
        ..Default::default()
    }
}

async fn audit_queries(s: &dyn Store) {
    let rows: Vec<AuditRow> = (1..=10)
        .map(|i| {
            ev(
                i,
                if i % 2 == 0 { "GetUser" } else { "CreateUser" },
                if i <= 5 { "alice" } else { "bob" },
                &[&format!("res-{}", i % 3)],
            )
        })
        .collect();
    s.append_audit(&rows).await.unwrap();
    let all = s
        .query_audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    assert_eq!(all[0].event_id, "id-10");
    let gets = s
        .query_audit(&AuditQuery {
            event_name: Some("GetUser".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(gets.len(), 5);
    let bob = s
        .query_audit(&AuditQuery {
            username: Some("bob".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 5);
    let res0 = s
        .query_audit(&AuditQuery {
            resource_name: Some("res-0".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        res0.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        ["id-9", "id-6", "id-3"]
    );
    assert_eq!(res0[0].resource_names, ["res-0"]);
    let window = s
        .query_audit(&AuditQuery {
            start_ms: Some(3_000),
            end_ms: Some(5_000),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 3);
    // Pagination newest first.
    let page1 = s
        .query_audit(&AuditQuery {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let page2 = s
        .query_audit(&AuditQuery {
            limit: 4,
            before_seq: Some(page1[3].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2[0].event_id, "id-6");
    // Tailing oldest first.
    let tail = s
        .query_audit(&AuditQuery {
            limit: 100,
            after_seq: Some(page1[1].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        tail.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        ["id-10"]
    );
    s.clear_audit().await.unwrap();
    assert!(
        s.query_audit(&AuditQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn run_suite(s: &dyn Store) {
    records_roundtrip(s).await;
    meta_roundtrip(s).await;
    audit_queries(s).await;
}

mod sqlite {
    use super::*;

    #[tokio::test]
    async fn memory_backend() {
        let s = SqliteStore::memory().await.unwrap();
        run_suite(&s).await;
    }

    #[tokio::test]
    async fn file_backend_persists() {
        let dir = std::env::temp_dir().join(format!("keycard-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        {
            let s = SqliteStore::open(&path).await.unwrap();
            run_suite(&s).await;
            s.commit(&[Op::put("bucket", "b", "{}")]).await.unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.load_kind("bucket").await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
