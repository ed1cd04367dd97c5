//! One test suite for every `Store` backend. Each backend gets a module that
//! hands a fresh store to the shared checks.

use keycard_store::{AuditQuery, AuditRow, Op, SqliteStore, Store};

async fn records_roundtrip(s: &dyn Store) {
    s.commit(
        &[
            Op::put("user", "1/alice", "{\"a\":1}"),
            Op::put("user", "1/bob", "{}"),
        ],
        &[],
    )
    .await
    .unwrap();
    s.commit(&[Op::put("role", "1/r", "{}")], &[])
        .await
        .unwrap();
    let all = s.load_all().await.unwrap();
    assert_eq!(all.len(), 3);
    let users = s.load_kind("user").await.unwrap();
    assert_eq!(
        users.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["1/alice", "1/bob"]
    );
    // Overwrite and delete.
    s.commit(
        &[
            Op::put("user", "1/alice", "{\"a\":2}"),
            Op::delete("user", "1/bob"),
        ],
        &[],
    )
    .await
    .unwrap();
    let users = s.load_kind("user").await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].value, "{\"a\":2}");
    s.commit(
        &[Op::DeleteKind {
            kind: "user".into(),
        }],
        &[],
    )
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
        account: "111111111111".into(),
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

fn q(account: &str) -> AuditQuery {
    AuditQuery {
        account: Some(account.into()),
        limit: 1000,
        ..Default::default()
    }
}

/// A mutation and its event commit in one transaction; the final event
/// replaces the draft by event id (same seq), and a draft never replaces a
/// final event.
async fn mutation_with_event(s: &dyn Store) {
    let mut draft = ev(1, "CreateUser", "alice", &["alice"]);
    draft.event_id = "req-1".into();
    draft.body = "{\"outcome\":\"pending\"}".into();
    s.commit(&[Op::put("user", "1/alice", "{}")], &[draft.clone()])
        .await
        .unwrap();
    let got = s.query_audit(&q("111111111111")).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "{\"outcome\":\"pending\"}");
    let draft_seq = got[0].seq;
    // Another event, then the final one for the first request.
    s.append_audit(&[ev(2, "GetUser", "alice", &[])])
        .await
        .unwrap();
    let mut fin = draft.clone();
    fin.body = "{\"outcome\":\"done\"}".into();
    fin.resource_names = vec!["alice".into(), "arn:aws:iam::1:user/alice".into()];
    s.append_audit(&[fin.clone()]).await.unwrap();
    let got = s.query_audit(&q("111111111111")).await.unwrap();
    assert_eq!(got.len(), 2, "the final event replaced the draft");
    let first = got.iter().find(|r| r.event_id == "req-1").unwrap();
    assert_eq!(first.seq, draft_seq);
    assert_eq!(first.body, "{\"outcome\":\"done\"}");
    assert_eq!(first.resource_names, ["alice", "arn:aws:iam::1:user/alice"]);
    // A draft committed again (a second mutation of the request) leaves the
    // final event alone.
    s.commit(&[Op::put("user", "1/alice", "{\"v\":2}")], &[draft])
        .await
        .unwrap();
    let got = s.query_audit(&q("111111111111")).await.unwrap();
    let first = got.iter().find(|r| r.event_id == "req-1").unwrap();
    assert_eq!(first.body, "{\"outcome\":\"done\"}");
    // An event alone commits too (no entity ops).
    let mut solo = ev(3, "DeleteUser", "alice", &[]);
    solo.event_id = "req-3".into();
    s.commit(&[], &[solo]).await.unwrap();
    assert_eq!(s.query_audit(&q("111111111111")).await.unwrap().len(), 3);
    s.clear_audit().await.unwrap();
    s.commit(
        &[Op::DeleteKind {
            kind: "user".into(),
        }],
        &[],
    )
    .await
    .unwrap();
}

/// The account filter and pagination run in SQL: every page but the last
/// is full, whatever the other accounts wrote in between.
async fn account_pages(s: &dyn Store) {
    let rows: Vec<AuditRow> = (1..=120)
        .map(|i| {
            let mut r = ev(i, "GetUser", "u", &[]);
            r.account = if i % 3 == 0 {
                "222222222222"
            } else {
                "111111111111"
            }
            .into();
            r
        })
        .collect();
    s.append_audit(&rows).await.unwrap();
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .query_audit(&AuditQuery {
                account: Some("222222222222".into()),
                limit: 15,
                before_seq: before,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.iter().all(|r| r.account == "222222222222"));
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.seq);
        pages.push(page.len());
    }
    assert_eq!(pages, [15, 15, 10]);
    let name = s
        .query_audit(&AuditQuery {
            account: Some("111111111111".into()),
            event_name: Some("GetUser".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(name.len(), 50);
    assert!(
        s.query_audit(&q("333333333333")).await.unwrap().is_empty(),
        "no event of an unknown account"
    );
    s.clear_audit().await.unwrap();
}

async fn run_suite(s: &dyn Store) {
    records_roundtrip(s).await;
    meta_roundtrip(s).await;
    audit_queries(s).await;
    mutation_with_event(s).await;
    account_pages(s).await;
}

mod sqlite {
    use super::*;
    use keycard_store::Durability;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keycard-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    #[tokio::test]
    async fn fsync_backend() {
        let path = temp_db("fsync");
        let s = SqliteStore::open_with(&path, Durability::PowerLoss)
            .await
            .unwrap();
        run_suite(&s).await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A data dir written before the account column: the column is added
    /// and filled from each event's recipientAccountId, duplicate event ids
    /// go, and lookups by account find the old events.
    #[tokio::test]
    async fn migrates_old_audit_table() {
        use sqlx::sqlite::SqliteConnectOptions;
        use sqlx::{Connection, Executor};
        let path = temp_db("migrate");
        {
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            c.execute(
                "CREATE TABLE audit (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,
                    event_time_ms INTEGER NOT NULL, event_name TEXT NOT NULL,
                    event_source TEXT NOT NULL, username TEXT NOT NULL,
                    access_key_id TEXT NOT NULL, read_only INTEGER NOT NULL, body TEXT NOT NULL)",
            )
            .await
            .unwrap();
            c.execute("CREATE INDEX audit_event_id ON audit (event_id)")
                .await
                .unwrap();
            c.execute(
                "INSERT INTO audit (event_id, event_time_ms, event_name, event_source, username,
                                    access_key_id, read_only, body) VALUES
                 ('e1', 1, 'GetUser', 'iam.amazonaws.com', 'a', 'AKIA1', 1, '{\"recipientAccountId\":\"111111111111\"}'),
                 ('e2', 2, 'GetUser', 'iam.amazonaws.com', 'a', 'AKIA1', 1, '{\"recipientAccountId\":\"222222222222\"}'),
                 ('e2', 3, 'GetUser', 'iam.amazonaws.com', 'a', 'AKIA1', 1, '{\"recipientAccountId\":\"222222222222\"}'),
                 ('e3', 4, 'GetUser', 'iam.amazonaws.com', 'a', 'AKIA1', 1, 'not json')",
            )
            .await
            .unwrap();
            c.close().await.unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        let one = s.query_audit(&q("111111111111")).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event_id, "e1");
        assert_eq!(one[0].account, "111111111111");
        let two = s.query_audit(&q("222222222222")).await.unwrap();
        assert_eq!(two.len(), 1, "duplicate event id removed");
        assert_eq!(
            s.query_audit(&q("")).await.unwrap().len(),
            1,
            "unparsable body: no account"
        );
        // New events append after the migrated ones; opening again is a no-op.
        s.append_audit(&[ev(9, "GetUser", "a", &[])]).await.unwrap();
        drop(s);
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.query_audit(&q("111111111111")).await.unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

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
            s.commit(&[Op::put("bucket", "b", "{}")], &[])
                .await
                .unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.load_kind("bucket").await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
