//! One test suite for every `Store` backend. Every shared check runs as its
//! own test on each backend (`backends!` below), and each backend module
//! adds what only it has.
//!
//! The PostgreSQL tests need a server: `scripts/with-postgres.sh` starts a
//! throwaway one and sets `KEYCARD_TEST_PG`; each test makes its own
//! database there, so they run in parallel. Without `KEYCARD_TEST_PG` they
//! fail, unless `KEYCARD_SKIP_PG=1` says to skip them.

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
    s.put_meta("node/a", b"1").await.unwrap();
    s.put_meta("node/b", b"2").await.unwrap();
    s.put_meta("node_x", b"3").await.unwrap();
    let listed = s.list_meta("node/").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("node/a".to_string(), b"1".to_vec()),
            ("node/b".to_string(), b"2".to_vec())
        ]
    );
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

const DAY: i64 = 86_400_000;

/// Retention forgets events before the cutoff and keeps every one from it
/// on, with their resource names; new events still go in afterwards.
async fn retention(s: &dyn Store) {
    let at = |i: i64, ms: i64| {
        let mut r = ev(i, "GetUser", "u", &["res"]);
        r.event_time_ms = ms;
        r
    };
    let base = 20_000 * DAY;
    let rows = vec![
        at(1, base + 5),
        at(2, base + DAY - 1),
        at(3, base + DAY),
        at(4, base + 2 * DAY + 7),
    ];
    s.append_audit(&rows).await.unwrap();
    s.expire_audit(base + DAY).await.unwrap();
    let left = s.query_audit(&q("111111111111")).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        ["id-4", "id-3"]
    );
    let named = s
        .query_audit(&AuditQuery {
            resource_name: Some("res".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(named.len(), 2);
    // An event of an expired day can be written again.
    s.append_audit(&[at(5, base + 1)]).await.unwrap();
    assert_eq!(s.query_audit(&q("111111111111")).await.unwrap().len(), 3);
    s.expire_audit(i64::MIN).await.unwrap();
    assert_eq!(s.query_audit(&q("111111111111")).await.unwrap().len(), 3);
    s.clear_audit().await.unwrap();
}

/// Whatever the domain hands it, a store answers (Ok or a backend error)
/// and keeps working: extreme times, empty and odd strings, NUL bytes.
async fn garbage_never_panics(s: &dyn Store) {
    let mut rows = Vec::new();
    for (i, ms) in [i64::MIN, -1, 0, i64::MAX].into_iter().enumerate() {
        let mut r = ev(
            i as i64,
            "",
            "",
            &["", "ü\u{1F600}'\"; DROP TABLE records; --"],
        );
        r.event_time_ms = ms;
        r.account = "acct".into();
        rows.push(r);
    }
    s.append_audit(&rows).await.unwrap();
    let got = s.query_audit(&q("acct")).await.unwrap();
    assert_eq!(got.len(), 4);
    let window = s
        .query_audit(&AuditQuery {
            start_ms: Some(i64::MIN),
            end_ms: Some(i64::MAX),
            before_seq: Some(i64::MAX),
            limit: u32::MAX,
            ..q("acct")
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 4);
    // NUL is refused by PostgreSQL and kept by SQLite: either is fine, a
    // panic is not.
    let mut nul = ev(99, "Get\0User", "a\0b", &["x\0y"]);
    nul.body = "{\"k\":\"\0\"}".into();
    let _ = s.append_audit(&[nul]).await;
    let _ = s.commit(&[Op::put("k\0", "a\0", "\0")], &[]).await;
    let _ = s.put_meta("m\0", b"\0").await;
    let _ = s.get_meta("m\0").await;
    s.commit(&[Op::put("user", "", "")], &[]).await.unwrap();
    assert_eq!(s.load_kind("user").await.unwrap().len(), 1);
    s.clear_audit().await.unwrap();
}

async fn run_suite(s: &dyn Store) {
    records_roundtrip(s).await;
    meta_roundtrip(s).await;
    audit_queries(s).await;
    mutation_with_event(s).await;
    account_pages(s).await;
    retention(s).await;
}

/// One test per shared check and backend: `sqlite_each::<check>` on a
/// private in-memory database, `pg_each::<check>` on a fresh PostgreSQL one.
macro_rules! backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite_each {
            $(
                #[tokio::test]
                async fn $check() {
                    let s = keycard_store::SqliteStore::memory().await.unwrap();
                    super::$check(&s).await;
                }
            )*
        }
        mod pg_each {
            $(
                #[tokio::test]
                async fn $check() {
                    let Some(s) = super::postgres::fresh(stringify!($check)).await else {
                        return;
                    };
                    super::$check(&s).await;
                }
            )*
        }
    };
}

backends!(
    records_roundtrip,
    meta_roundtrip,
    audit_queries,
    mutation_with_event,
    account_pages,
    retention,
    garbage_never_panics,
);

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

mod postgres {
    use super::*;
    use keycard_store::{Notice, PgStore};
    use sqlx::postgres::PgConnectOptions;
    use sqlx::{AssertSqlSafe, Connection, Executor};
    use std::str::FromStr;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// The test server's options for a database of its own, made now;
    /// `None` only when `KEYCARD_SKIP_PG=1`.
    pub async fn fresh_options(name: &str) -> Option<PgConnectOptions> {
        static N: AtomicU32 = AtomicU32::new(0);
        let Ok(url) = std::env::var("KEYCARD_TEST_PG") else {
            if std::env::var("KEYCARD_SKIP_PG").as_deref() == Ok("1") {
                eprintln!("skipping the PostgreSQL test {name}: KEYCARD_SKIP_PG=1");
                return None;
            }
            panic!(
                "KEYCARD_TEST_PG is not set: run under scripts/with-postgres.sh \
                 (or set KEYCARD_SKIP_PG=1 to skip the PostgreSQL tests)"
            );
        };
        let db = format!(
            "kc_{}_{}_{}",
            name.to_lowercase(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        c.execute(AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .await
            .unwrap();
        c.close().await.unwrap();
        Some(PgConnectOptions::from_str(&url).unwrap().database(&db))
    }

    pub async fn fresh(name: &str) -> Option<PgStore> {
        let opts = fresh_options(name).await?;
        Some(PgStore::open_with(opts).await.unwrap())
    }

    #[tokio::test]
    async fn whole_suite_on_one_database() {
        let Some(s) = fresh("suite").await else {
            return;
        };
        run_suite(&s).await;
    }

    /// Data outlives the handle; opening again applies no migration twice,
    /// and nodes opening a new database together all succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persists_and_migrates_once() {
        let Some(opts) = fresh_options("persist").await else {
            return;
        };
        let opens: Vec<_> = (0..4)
            .map(|_| tokio::spawn(PgStore::open_with(opts.clone())))
            .collect();
        let mut stores = Vec::new();
        for o in opens {
            stores.push(o.await.unwrap().unwrap());
        }
        let s = stores.swap_remove(0);
        assert_eq!(s.schema_version().await.unwrap(), 1);
        s.commit(
            &[Op::put("bucket", "b", "{}")],
            &[ev(1, "CreateBucket", "u", &["b"])],
        )
        .await
        .unwrap();
        drop(s);
        drop(stores);
        let s = PgStore::open_with(opts).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), 1);
        assert_eq!(s.load_kind("bucket").await.unwrap().len(), 1);
        assert_eq!(s.query_audit(&q("111111111111")).await.unwrap().len(), 1);
    }

    /// A commit on one node is in the other's change feed, in order, and
    /// the other hears of it; audit-only commits are not changes.
    #[tokio::test]
    async fn change_feed_across_handles() {
        let Some(opts) = fresh_options("feed").await else {
            return;
        };
        let a = PgStore::open_with(opts.clone()).await.unwrap();
        let b = PgStore::open_with(opts).await.unwrap();
        let mut heard = b.subscribe().await.unwrap();
        assert_eq!(b.current_seq().await.unwrap(), 0);
        a.commit(
            &[
                Op::put("user", "1/alice", "{}"),
                Op::delete("user", "1/bob"),
                Op::DeleteKind {
                    kind: "role".into(),
                },
            ],
            &[],
        )
        .await
        .unwrap();
        a.commit(&[], &[ev(1, "GetUser", "u", &[])]).await.unwrap();
        let notice = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        let last = b.current_seq().await.unwrap();
        assert_eq!(notice, Notice::Seq(last));
        let changes = b.changes_since(0).await.unwrap();
        assert_eq!(
            changes.iter().map(|c| c.op.clone()).collect::<Vec<_>>(),
            [
                Op::put("user", "1/alice", "{}"),
                Op::delete("user", "1/bob"),
                Op::DeleteKind {
                    kind: "role".into()
                },
            ]
        );
        assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(changes.last().map(|c| c.seq), Some(last));
        b.commit(&[Op::put("user", "1/carol", "{}")], &[])
            .await
            .unwrap();
        let next = a.changes_since(last).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].op, Op::put("user", "1/carol", "{}"));
        assert_eq!(a.load_kind("user").await.unwrap().len(), 2);
    }

    /// The audit writer's own connection, killed between two appends, is
    /// replaced: the second append succeeds without the caller retrying,
    /// and a repeated event id replaces the stored event.
    #[tokio::test]
    async fn audit_append_survives_a_lost_connection() {
        let Some(opts) = fresh_options("auditconn").await else {
            return;
        };
        let s = PgStore::open_with(opts.clone()).await.unwrap();
        s.append_audit(&[ev(1, "GetUser", "alice", &["alice"])])
            .await
            .unwrap();
        let mut c = sqlx::PgConnection::connect_with(&opts).await.unwrap();
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert!(!killed.is_empty());
        let mut again = ev(1, "GetUser", "alice", &["alice"]);
        again.body = "{\"n\":\"replaced\"}".into();
        s.append_audit(&[ev(2, "GetUser", "bob", &["bob"]), again])
            .await
            .unwrap();
        let got = s.query_audit(&q("111111111111")).await.unwrap();
        let mut bodies: Vec<(String, String)> =
            got.into_iter().map(|r| (r.event_id, r.body)).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            [
                ("id-1".to_string(), "{\"n\":\"replaced\"}".to_string()),
                ("id-2".to_string(), "{\"n\":2}".to_string()),
            ]
        );
    }

    /// A listener whose connection dies says so (catch up), then hears
    /// later commits on a new connection.
    #[tokio::test]
    async fn listener_survives_a_lost_connection() {
        let Some(opts) = fresh_options("listener").await else {
            return;
        };
        let s = PgStore::open_with(opts.clone()).await.unwrap();
        let mut heard = s.subscribe().await.unwrap();
        let mut c = sqlx::PgConnection::connect_with(&opts).await.unwrap();
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(killed.len(), 1);
        let mut notices = Vec::new();
        for _ in 0..3 {
            let got = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
            let got = got.expect("an answer within 10 s");
            notices.push(format!("{got:?}"));
            if matches!(got, Ok(Notice::CatchUp)) {
                break;
            }
        }
        assert!(
            notices.last().is_some_and(|n| n == "Ok(CatchUp)"),
            "{notices:?}"
        );
        s.commit(&[Op::put("user", "u", "{}")], &[]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        assert_eq!(got, Notice::Seq(s.current_seq().await.unwrap()));
    }

    /// An unreachable or malformed database is an error, not a panic.
    #[tokio::test]
    async fn unreachable_database_is_an_error() {
        assert!(
            PgStore::open("postgres://nobody@127.0.0.1:1/none")
                .await
                .is_err()
        );
        assert!(PgStore::open("not a url").await.is_err());
    }

    /// Concurrent writers on two handles: every commit gets its own range
    /// of the sequence, and the feed replays to the stored state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_keep_one_order() {
        let Some(opts) = fresh_options("order").await else {
            return;
        };
        let a = PgStore::open_with(opts.clone()).await.unwrap();
        let b = PgStore::open_with(opts).await.unwrap();
        let write = |s: PgStore, who: &'static str| {
            tokio::spawn(async move {
                for i in 0..20 {
                    s.commit(
                        &[
                            Op::put("n", "shared", format!("{who}{i}")),
                            Op::put("n", format!("{who}{i}"), "x"),
                        ],
                        &[],
                    )
                    .await
                    .unwrap();
                }
            })
        };
        let (x, y) = (write(a.clone(), "a"), write(b.clone(), "b"));
        x.await.unwrap();
        y.await.unwrap();
        let changes = a.changes_since(0).await.unwrap();
        assert_eq!(changes.len(), 80);
        // Each commit's two changes are adjacent: no interleaving.
        for pair in changes.chunks(2) {
            let (Op::Put { value, .. }, Op::Put { key, .. }) = (&pair[0].op, &pair[1].op) else {
                panic!("unexpected ops {pair:?}");
            };
            assert_eq!(value, key);
        }
        let last_shared = changes
            .iter()
            .rev()
            .find_map(|c| match &c.op {
                Op::Put { key, value, .. } if key == "shared" => Some(value.clone()),
                _ => None,
            })
            .unwrap();
        let stored = b.load_kind("n").await.unwrap();
        let shared = stored.iter().find(|r| r.key == "shared").unwrap();
        assert_eq!(
            shared.value, last_shared,
            "the feed's last write is the stored one"
        );
    }

    /// Retention drops whole day partitions (tables), and a handle that
    /// still believes a dropped day exists writes to it again.
    #[tokio::test]
    async fn retention_drops_partitions() {
        let Some(opts) = fresh_options("partitions").await else {
            return;
        };
        let a = PgStore::open_with(opts.clone()).await.unwrap();
        let b = PgStore::open_with(opts.clone()).await.unwrap();
        let at = |i: i64, ms: i64| {
            let mut r = ev(i, "GetUser", "u", &["r"]);
            r.event_time_ms = ms;
            r
        };
        let day0 = 20_400 * DAY;
        b.append_audit(&[at(1, day0), at(2, day0 + DAY), at(3, day0 + 2 * DAY)])
            .await
            .unwrap();
        let tables = || async {
            let mut c = sqlx::PgConnection::connect_with(&opts).await.unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'audit_%p2%'
                 ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
        };
        assert_eq!(
            tables().await,
            [
                "audit_p20251108",
                "audit_p20251109",
                "audit_p20251110",
                "audit_p20251111",
                "audit_resource_p20251108",
                "audit_resource_p20251109",
                "audit_resource_p20251110",
                "audit_resource_p20251111",
            ],
            "each event's day and the next one"
        );
        a.expire_audit(day0 + 2 * DAY).await.unwrap();
        assert_eq!(
            tables().await,
            [
                "audit_p20251110",
                "audit_p20251111",
                "audit_resource_p20251110",
                "audit_resource_p20251111"
            ]
        );
        // b's cache still has the dropped days.
        b.append_audit(&[at(4, day0 + 5)]).await.unwrap();
        let left = b.query_audit(&q("111111111111")).await.unwrap();
        assert_eq!(
            left.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
            ["id-4", "id-3"]
        );
        // The lookup by resource name still uses its own partitions.
        let named = a
            .query_audit(&AuditQuery {
                resource_name: Some("r".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(named.len(), 2);
    }
}

/// Both backends, fed the same random history, end in the same state:
/// records in the same order, and every lookup returns the same events in
/// the same order (seq values themselves may differ: PostgreSQL spends a
/// sequence number on an event id it finds taken).
mod equivalence {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Action {
        Commit(Vec<Op>, Vec<AuditRow>),
        Append(Vec<AuditRow>),
        /// Expire before this many days past the base (day boundaries:
        /// where the backends' retention granularity agrees).
        Expire(i64),
    }

    const BASE: i64 = 20_000 * DAY;

    fn op() -> impl Strategy<Value = Op> {
        let kind = prop::sample::select(vec!["user", "role", "Role"]);
        // Bytewise order must match: upper before lower, ASCII before é.
        let key = prop::sample::select(vec!["a", "B", "b", "_", "é", "", "a b"]);
        prop_oneof![
            4 => (kind.clone(), key.clone(), "[a-z{}\":]{0,6}").prop_map(|(k, key, v)| Op::put(k, key, v)),
            2 => (kind.clone(), key).prop_map(|(k, key)| Op::delete(k, key)),
            1 => kind.prop_map(|k| Op::DeleteKind { kind: k.into() }),
        ]
    }

    fn row() -> impl Strategy<Value = AuditRow> {
        (
            0..6u8,
            -1..4i64,
            0..1000i64,
            prop::sample::select(vec!["GetUser", "CreateUser"]),
            prop::sample::select(vec!["1", "2"]),
            prop::sample::subsequence(vec!["r1", "r2", "r3"], 0..3),
            "[a-z]{0,4}",
        )
            .prop_map(|(id, day, ms, name, account, res, body)| AuditRow {
                event_id: format!("e{id}"),
                event_time_ms: BASE + day * DAY + ms,
                event_name: name.into(),
                event_source: "iam.amazonaws.com".into(),
                username: format!("u{}", id % 2),
                access_key_id: format!("AKIA{}", id % 3),
                account: account.into(),
                resource_names: res.into_iter().map(String::from).collect(),
                read_only: name.starts_with("Get"),
                body,
                ..Default::default()
            })
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            3 => (prop::collection::vec(op(), 0..4), prop::collection::vec(row(), 0..3))
                .prop_map(|(o, r)| Action::Commit(o, r)),
            3 => prop::collection::vec(row(), 1..4).prop_map(Action::Append),
            1 => (0..4i64).prop_map(Action::Expire),
        ]
    }

    async fn apply(s: &dyn Store, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Commit(ops, rows) => s.commit(ops, rows).await.unwrap(),
                Action::Append(rows) => s.append_audit(rows).await.unwrap(),
                Action::Expire(days) => s.expire_audit(BASE + days * DAY).await.unwrap(),
            }
        }
    }

    /// What a lookup shows, without the seq.
    async fn lookups(
        s: &dyn Store,
    ) -> Vec<Vec<(String, i64, String, String, Vec<String>, String)>> {
        let queries = [
            AuditQuery::default(),
            q("1"),
            AuditQuery {
                event_name: Some("CreateUser".into()),
                ..q("2")
            },
            AuditQuery {
                resource_name: Some("r2".into()),
                limit: 100,
                ..Default::default()
            },
            AuditQuery {
                username: Some("u1".into()),
                start_ms: Some(BASE + DAY),
                limit: 2,
                ..Default::default()
            },
            AuditQuery {
                read_only: Some(true),
                event_id: Some("e2".into()),
                ..q("1")
            },
        ];
        let mut out = Vec::new();
        for query in &queries {
            let rows = s.query_audit(query).await.unwrap();
            out.push(
                rows.into_iter()
                    .map(|r| {
                        let key = (r.event_id, r.event_time_ms, r.event_name, r.account);
                        (key.0, key.1, key.2, key.3, r.resource_names, r.body)
                    })
                    .collect(),
            );
        }
        out
    }

    proptest! {
        // Each case makes a database: few by default, PROPTEST_CASES for more.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
            ..ProptestConfig::default()
        })]
        #[test]
        fn sqlite_and_postgres_agree(actions in prop::collection::vec(action(), 1..12)) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let Some(pg) = super::postgres::fresh("equiv").await else {
                    return;
                };
                let lite = SqliteStore::memory().await.unwrap();
                apply(&lite, &actions).await;
                apply(&pg, &actions).await;
                assert_eq!(lite.load_all().await.unwrap(), pg.load_all().await.unwrap());
                for kind in ["user", "role", "Role"] {
                    assert_eq!(
                        lite.load_kind(kind).await.unwrap(),
                        pg.load_kind(kind).await.unwrap()
                    );
                }
                assert_eq!(lookups(&lite).await, lookups(&pg).await);
            });
        }
    }
}
