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
    named_node(url, master, "default").await
}

async fn named_node(url: &str, master: &str, name: &str) -> Arc<Keycard> {
    let dir = std::env::temp_dir().join(format!("keycard-node-{}", uuid::Uuid::new_v4()));
    let mut config = Config::new(dir);
    config.master_key_hex = Some(SecretKey::new(master.to_string()));
    config.node = name.to_string();
    config.node_timeout = Some(std::time::Duration::from_secs(30));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_belong_to_a_node_and_move_by_adoption_and_drain() {
    use keycard_services::ec2::RunInput;
    use keycard_services::nodes::Liveness;
    let Some(url) = fresh_url().await else { return };
    let master = "44".repeat(32);
    let a = named_node(&url, &master, "a").await;
    let b = named_node(&url, &master, "b").await;
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    let input = RunInput {
        image_id: "ami-0abcdef1234567890".into(),
        min_count: 1,
        max_count: 1,
        ..RunInput::default()
    };
    let (_, launched) = a
        .run_instances(DEFAULT_ACCOUNT, "us-east-1", input)
        .await
        .unwrap();
    let id = launched[0].id.clone();
    b.sync().await.unwrap();
    let on_b = b.instance(DEFAULT_ACCOUNT, &id).unwrap();
    assert_eq!(on_b.owner(), "a");
    assert!(a.serves(&launched[0]) && !b.serves(&on_b));
    assert_eq!(b.liveness("a"), Liveness::Live);
    // A live node is not adopted.
    assert!(b.adopt_node("a").await.is_err());

    // A stops: down at once on B, which adopts its instance.
    a.heartbeat_stopped().await.unwrap();
    b.heartbeat().await.unwrap();
    assert!(matches!(
        b.liveness("a"),
        Liveness::Down {
            since_ms: Some(_),
            ..
        }
    ));
    assert_eq!(b.adopt_node("a").await.unwrap(), vec![id.clone()]);
    a.sync().await.unwrap();
    let on_a = a.instance(DEFAULT_ACCOUNT, &id).unwrap();
    assert_eq!(on_a.owner(), "b");
    assert!(!a.serves(&on_a));

    // A is back; draining B moves the instance to A.
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    let moved = b.drain_node("b").await.unwrap();
    assert_eq!(moved, vec![(id.clone(), "a".to_string())]);
    a.sync().await.unwrap();
    assert!(a.serves(&a.instance(DEFAULT_ACCOUNT, &id).unwrap()));
    let nodes = b.list_nodes();
    let counts: Vec<(String, bool, usize)> = nodes
        .into_iter()
        .map(|n| (n.name, n.live, n.instances))
        .collect();
    assert_eq!(counts, vec![("a".into(), true, 1), ("b".into(), true, 0)]);
}

// ---- concurrent conflicting writes (property) --------------------------------

/// One write of the property test, on the case's own names.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// CreateUser of one of two names.
    CreateUser(u8),
    /// AttachRolePolicy of one of 12 managed policies (the quota is 10).
    Attach(u8),
    /// CreatePolicyVersion (the quota is 5 versions; one exists).
    Version,
}

/// The state the writes touch, as a serial order leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    users: std::collections::BTreeSet<u8>,
    attached: std::collections::BTreeSet<u8>,
    versions: usize,
}

impl Model {
    /// Apply one write serially: its outcome (Ok or the error code).
    fn apply(&mut self, w: Write) -> Result<(), &'static str> {
        match w {
            Write::CreateUser(u) if !self.users.insert(u) => Err("EntityAlreadyExists"),
            Write::Attach(p) if !self.attached.contains(&p) && self.attached.len() >= 10 => {
                Err("LimitExceeded")
            }
            Write::Attach(p) => {
                self.attached.insert(p);
                Ok(())
            }
            Write::Version if self.versions >= 5 => Err("LimitExceeded"),
            Write::Version => {
                self.versions += 1;
                Ok(())
            }
            Write::CreateUser(_) => Ok(()),
        }
    }
}

/// Whether some interleaving of the two nodes' programs (each in its
/// order) gives these outcomes and this final state, run serially.
fn serializable(
    start: &Model,
    progs: [&[(Write, Result<(), &'static str>)]; 2],
    end: &Model,
) -> bool {
    fn go(
        m: &Model,
        a: &[(Write, Result<(), &'static str>)],
        b: &[(Write, Result<(), &'static str>)],
        end: &Model,
    ) -> bool {
        if a.is_empty() && b.is_empty() {
            return m == end;
        }
        for (first, rest, other_first) in [(a, b, true), (b, a, false)] {
            let Some(((w, got), tail)) = first.split_first() else {
                continue;
            };
            let mut next = m.clone();
            if next.apply(*w) == *got {
                let ok = if other_first {
                    go(&next, tail, rest, end)
                } else {
                    go(&next, rest, tail, end)
                };
                if ok {
                    return true;
                }
            }
        }
        false
    }
    go(start, progs[0], progs[1], end)
}

fn write_strategy() -> impl proptest::strategy::Strategy<Value = Write> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..2).prop_map(Write::CreateUser),
        (0u8..12).prop_map(Write::Attach),
        Just(Write::Version),
    ]
}

struct Case {
    prefix: String,
    role: String,
    policies: Vec<String>,
    versioned: String,
}

const ALLOW: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// A role with `attached` policies already on it, 12 policies to attach,
/// and a policy with `versions` versions.
async fn setup(kc: &Keycard, attached: usize, versions: usize) -> Case {
    use keycard_services::iam::{Holder, NewRole};
    let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let role = format!("{prefix}-role");
    kc.create_role(
        DEFAULT_ACCOUNT,
        NewRole {
            name: role.clone(),
            path: "/".into(),
            trust: TRUST.into(),
            description: None,
            max_session_duration: None,
            tags: vec![],
            boundary: None,
        },
    )
    .await
    .unwrap();
    let mut policies = Vec::new();
    for k in 0..12 {
        let p = kc
            .create_policy(
                DEFAULT_ACCOUNT,
                &format!("{prefix}-p{k}"),
                "/",
                ALLOW,
                None,
                vec![],
            )
            .await
            .unwrap();
        if k < attached {
            kc.attach_policy(DEFAULT_ACCOUNT, Holder::Role, &role, &p.arn())
                .await
                .unwrap();
        }
        policies.push(p.arn());
    }
    let versioned = kc
        .create_policy(
            DEFAULT_ACCOUNT,
            &format!("{prefix}-v"),
            "/",
            ALLOW,
            None,
            vec![],
        )
        .await
        .unwrap()
        .arn();
    for _ in 1..versions {
        kc.create_policy_version(DEFAULT_ACCOUNT, &versioned, ALLOW, false)
            .await
            .unwrap();
    }
    Case {
        prefix,
        role,
        policies,
        versioned,
    }
}

async fn run(kc: &Keycard, case: &Case, w: Write) -> Result<(), &'static str> {
    use keycard_services::iam::Holder;
    let r = match w {
        Write::CreateUser(u) => kc
            .create_user(
                DEFAULT_ACCOUNT,
                &format!("{}-u{u}", case.prefix),
                "/",
                vec![],
                None,
            )
            .await
            .map(|_| ()),
        Write::Attach(p) => {
            kc.attach_policy(
                DEFAULT_ACCOUNT,
                Holder::Role,
                &case.role,
                &case.policies[usize::from(p)],
            )
            .await
        }
        Write::Version => kc
            .create_policy_version(DEFAULT_ACCOUNT, &case.versioned, ALLOW, false)
            .await
            .map(|_| ()),
    };
    r.map_err(|e| match e.code() {
        "EntityAlreadyExists" => "EntityAlreadyExists",
        "LimitExceeded" => "LimitExceeded",
        other => panic!("unexpected {other}: {e}"),
    })
}

/// What one node's memory says about the case's names.
fn observe(kc: &Keycard, case: &Case) -> Model {
    let st = kc.state();
    let users = (0..2)
        .filter(|u| {
            st.user(DEFAULT_ACCOUNT, &format!("{}-u{u}", case.prefix))
                .is_some()
        })
        .collect();
    let role = st.role(DEFAULT_ACCOUNT, &case.role).unwrap();
    let attached = case
        .policies
        .iter()
        .enumerate()
        .filter(|(_, arn)| role.attached.contains(arn))
        .map(|(k, _)| k as u8)
        .collect();
    let versions = st.policies[&case.versioned].versions.len();
    Model {
        users,
        attached,
        versions,
    }
}

#[test]
fn the_serial_order_check_refuses_two_winners() {
    let both: &[(Write, Result<(), &'static str>)] = &[(Write::CreateUser(0), Ok(()))];
    let one = Model {
        users: [0].into(),
        ..Model::default()
    };
    assert!(!serializable(&Model::default(), [both, both], &one));
    let lost: &[(Write, Result<(), &'static str>)] =
        &[(Write::CreateUser(0), Err("EntityAlreadyExists"))];
    assert!(serializable(&Model::default(), [both, lost], &one));
    assert!(!serializable(
        &Model::default(),
        [both, lost],
        &Model::default()
    ));
}

#[test]
fn concurrent_conflicting_writes_on_two_nodes_leave_a_serial_state() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = rt.block_on(fresh_url()) else {
        return;
    };
    let master = "33".repeat(32);
    let (a, b) = rt.block_on(async { (node(&url, &master).await, node(&url, &master).await) });
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        attached in 7usize..=10,
        versions in 3usize..=5,
        prog_a in proptest::collection::vec(write_strategy(), 1..5),
        prog_b in proptest::collection::vec(write_strategy(), 1..5),
    )| {
        rt.block_on(async {
            let case = setup(&a, attached, versions).await;
            b.sync().await.unwrap();
            let start = observe(&b, &case);
            let (out_a, out_b) = tokio::join!(
                async {
                    let mut out = Vec::new();
                    for w in &prog_a {
                        out.push((*w, run(&a, &case, *w).await));
                    }
                    out
                },
                async {
                    let mut out = Vec::new();
                    for w in &prog_b {
                        out.push((*w, run(&b, &case, *w).await));
                    }
                    out
                },
            );
            a.sync().await.unwrap();
            b.sync().await.unwrap();
            let end = observe(&a, &case);
            assert_eq!(end, observe(&b, &case), "the nodes disagree");
            assert!(
                serializable(&start, [&out_a, &out_b], &end),
                "no serial order explains {out_a:?} / {out_b:?} ending in {end:?} from {start:?}"
            );
        });
    });
}
