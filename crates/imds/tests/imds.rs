//! The metadata service against a real `Keycard` (SQLite in a temp dir):
//! token rules, isolation between instances, and properties over
//! arbitrary requests (never a panic, never a 5xx, nothing for a forged
//! token).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use keycard_imds::handler::{TOKEN_HEADER, TTL_HEADER, respond};
use keycard_imds::token;
use keycard_services::ec2::{MetadataOptionsInput, ProfileRef, RunInput};
use keycard_services::iam::NewRole;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard};
use keycard_store::SqliteStore;
use proptest::prelude::*;

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

struct Fixture {
    kc: Arc<Keycard>,
    a: String,
    b: String,
    _dir: tempfile::TempDir,
}

fn fixture(tokens: &str) -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("k.db")).await.unwrap();
        let kc = Keycard::open(Config::new(dir.path()), Arc::new(store))
            .await
            .unwrap();
        let acct = DEFAULT_ACCOUNT;
        kc.create_role(
            acct,
            NewRole {
                name: "R".into(),
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
        kc.create_instance_profile(acct, "P", "/", vec![])
            .await
            .unwrap();
        kc.add_role_to_instance_profile(acct, "P", "R")
            .await
            .unwrap();
        let run = |profile: bool| RunInput {
            image_id: "ami-0abcdef1234567890".into(),
            min_count: 1,
            max_count: 1,
            profile: profile.then(|| ProfileRef::Name("P".into())),
            metadata: MetadataOptionsInput {
                http_tokens: Some(tokens.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (_, a) = kc
            .run_instances(acct, "us-east-1", run(true))
            .await
            .unwrap();
        let (_, b) = kc
            .run_instances(acct, "us-east-1", run(false))
            .await
            .unwrap();
        Fixture {
            a: a[0].id.clone(),
            b: b[0].id.clone(),
            kc,
            _dir: dir,
        }
    })
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn get(f: &Fixture, id: &str, path: &str, tok: Option<&str>) -> u16 {
    let h = match tok {
        Some(t) => headers(&[(TOKEN_HEADER, t)]),
        None => HeaderMap::new(),
    };
    respond(&f.kc, id, &Method::GET, path, &h, keycard_services::now())
        .status()
        .as_u16()
}

#[test]
fn token_rules() {
    let f = fixture("required");
    let now = keycard_services::now();
    let put = |h: &[(&str, &str)]| {
        respond(
            &f.kc,
            &f.a,
            &Method::PUT,
            "/latest/api/token",
            &headers(h),
            now,
        )
    };
    let r = put(&[(TTL_HEADER, "60")]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[TTL_HEADER], "60");
    assert_eq!(put(&[]).status(), 400);
    assert_eq!(put(&[(TTL_HEADER, "21601")]).status(), 400);
    assert_eq!(
        put(&[(TTL_HEADER, "60"), ("x-forwarded-for", "1.2.3.4")]).status(),
        403
    );
    let t = token::mint_session(&f.kc, &f.a, now + 60);
    assert_eq!(get(&f, &f.a, "/latest/meta-data/instance-id", None), 401);
    assert_eq!(
        get(&f, &f.a, "/latest/meta-data/instance-id", Some(&t)),
        200
    );
    // Bound to the instance and to its expiry.
    assert_eq!(
        get(&f, &f.b, "/latest/meta-data/instance-id", Some(&t)),
        401
    );
    let old = token::mint_session(&f.kc, &f.a, now - 1);
    assert_eq!(
        get(&f, &f.a, "/latest/meta-data/instance-id", Some(&old)),
        401
    );
}

#[test]
fn credentials_only_for_the_role_of_the_instance() {
    let f = fixture("optional");
    assert_eq!(
        get(
            &f,
            &f.a,
            "/latest/meta-data/iam/security-credentials/R",
            None
        ),
        200
    );
    assert_eq!(
        get(
            &f,
            &f.a,
            "/latest/meta-data/iam/security-credentials/X",
            None
        ),
        404
    );
    assert_eq!(
        get(
            &f,
            &f.b,
            "/latest/meta-data/iam/security-credentials/R",
            None
        ),
        404
    );
    assert_eq!(get(&f, &f.b, "/latest/meta-data/iam/info", None), 404);
    assert_eq!(
        get(&f, "i-0000000000000000f", "/latest/meta-data/", None),
        404
    );
}

#[test]
fn container_tokens_name_their_instance() {
    let f = fixture("optional");
    let t = token::mint_container(&f.kc, &f.a);
    assert_eq!(
        token::open_container(&f.kc, &t).as_deref(),
        Some(f.a.as_str())
    );
    let mut forged = t.clone();
    forged.pop();
    forged.push(if t.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(token::open_container(&f.kc, &forged), None);
}

fn arb_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::PUT),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("latest".to_string()),
        Just("meta-data".to_string()),
        Just("iam".to_string()),
        Just("security-credentials".to_string()),
        Just("R".to_string()),
        Just("api".to_string()),
        Just("token".to_string()),
        Just("dynamic".to_string()),
        Just("tags".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        "[a-zA-Z0-9%._~-]{0,12}",
    ];
    prop::collection::vec(seg, 0..6).prop_map(|v| format!("/{}", v.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any request: an answer below 500, and credentials only for a GET
    /// on the instance's own role path.
    #[test]
    fn arbitrary_requests_are_answered_safely(
        method in arb_method(),
        path in arb_path(),
        ttl in proptest::option::of("[0-9a-z-]{0,8}"),
        tok in proptest::option::of("[A-Za-z0-9_=-]{0,60}"),
    ) {
        static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        let f = F.get_or_init(|| fixture("optional"));
        let mut pairs = Vec::new();
        if let Some(t) = &ttl { pairs.push((TTL_HEADER, t.as_str())); }
        if let Some(t) = &tok { pairs.push((TOKEN_HEADER, t.as_str())); }
        let h = headers(&pairs);
        let r = respond(&f.kc, &f.a, &method, &path, &h, keycard_services::now());
        prop_assert!(r.status().as_u16() < 500, "{} {} -> {}", method, path, r.status());
        if tok.is_some() && (method == Method::GET || method == Method::HEAD) {
            // Random strings are never valid tokens.
            prop_assert_eq!(r.status().as_u16(), 401);
        }
    }

    /// A token with any byte changed is refused.
    #[test]
    fn mutated_tokens_are_refused(pos in 0usize..44, ch in "[A-Za-z0-9_-]") {
        static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        let f = F.get_or_init(|| fixture("required"));
        let now = keycard_services::now();
        let t = token::mint_session(&f.kc, &f.a, now + 600);
        let mut b: Vec<char> = t.chars().collect();
        let p = pos % b.len();
        let c = ch.chars().next().unwrap();
        prop_assume!(b[p] != c);
        b[p] = c;
        let m: String = b.into_iter().collect();
        prop_assert!(!token::check_session(&f.kc, &f.a, &m, now));
    }
}
