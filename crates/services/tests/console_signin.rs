//! `Keycard::console_sign_in`: password, MFA and root sign-in, each
//! attempt refused with the same failure, a success giving an STS session.

use std::sync::Arc;

use keycard_services::console::{Origin, SignIn, SignInFailure};
use keycard_services::iam_governance::totp;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard};
use keycard_store::{SqliteStore, Store};

const ORIGIN: Origin<'static> = Origin {
    source_ip: "127.0.0.1",
    user_agent: "test",
    region: "us-east-1",
};

fn user<'a>(user: &'a str, password: &'a str, mfa: Option<&'a str>) -> SignIn<'a> {
    SignIn::User {
        account: DEFAULT_ACCOUNT,
        user,
        password,
        mfa_code: mfa,
    }
}

#[tokio::test]
async fn password_mfa_and_root_sign_in() {
    let dir = std::env::temp_dir().join(format!("keycard-signin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("k.db")).await.unwrap());
    let kc = Keycard::open(Config::new(&dir), store).await.unwrap();
    let a = DEFAULT_ACCOUNT;
    kc.create_user(a, "alice", "/", vec![], None).await.unwrap();
    kc.create_login_profile(a, "alice", "Good-Pass-123", false)
        .await
        .unwrap();

    let wrong = kc
        .console_sign_in(&user("alice", "Bad-Pass-1", None), &ORIGIN)
        .await;
    assert_eq!(wrong.err(), Some(SignInFailure::Failed));
    let ghost = kc
        .console_sign_in(&user("ghost", "Good-Pass-123", None), &ORIGIN)
        .await;
    assert_eq!(ghost.err(), Some(SignInFailure::Failed));
    let ok = kc
        .console_sign_in(&user("alice", "Good-Pass-123", None), &ORIGIN)
        .await
        .unwrap();
    assert!(ok.credentials.access_key_id.starts_with("ASIA"));
    let (_, caller) = kc
        .credentials(
            &ok.credentials.access_key_id,
            Some(&ok.credentials.session_token),
        )
        .unwrap();
    assert_eq!(caller.principal.arn, format!("arn:aws:iam::{a}:user/alice"));

    // With an MFA device: the password alone asks for the code.
    let (dev, seed) = kc
        .create_virtual_mfa(a, "/", "alice-mfa", vec![])
        .await
        .unwrap();
    let now = keycard_services::now() / 30;
    let step = u64::try_from(now).unwrap();
    let seed = keycard_services::iam_governance::base32_decode(seed.expose()).unwrap();
    kc.enable_mfa(
        a,
        "alice",
        &dev.serial,
        (&totp(&seed, step - 1), &totp(&seed, step)),
        false,
    )
    .await
    .unwrap();
    let no_code = kc
        .console_sign_in(&user("alice", "Good-Pass-123", None), &ORIGIN)
        .await;
    assert_eq!(no_code.err(), Some(SignInFailure::MfaRequired));
    let code = totp(&seed, step + 1);
    let signed = kc
        .console_sign_in(&user("alice", "Good-Pass-123", Some(&code)), &ORIGIN)
        .await
        .unwrap();
    assert!(signed.mfa);
    let (_, mfa_caller) = kc
        .credentials(
            &signed.credentials.access_key_id,
            Some(&signed.credentials.session_token),
        )
        .unwrap();
    let mut ctx = keycard_policy::Context::new();
    kc.add_caller_context(&mfa_caller, &mut ctx);
    assert_eq!(
        ctx.get("aws:MultiFactorAuthPresent").map(|v| v.to_vec()),
        Some(vec!["true".to_string()])
    );
    // The same code is not accepted twice.
    let again = kc
        .console_sign_in(&user("alice", "Good-Pass-123", Some(&code)), &ORIGIN)
        .await;
    assert_eq!(again.err(), Some(SignInFailure::Failed));

    // Root: its key id and secret, in its own account only.
    let (_, root_key, root_secret) = kc.create_account(Some("210987654321")).await.unwrap();
    let root = SignIn::Root {
        account: "210987654321",
        access_key_id: &root_key,
        secret: &root_secret,
    };
    assert!(kc.console_sign_in(&root, &ORIGIN).await.is_ok());
    let bad = SignIn::Root {
        account: "210987654321",
        access_key_id: &root_key,
        secret: "nope",
    };
    assert_eq!(
        kc.console_sign_in(&bad, &ORIGIN).await.err(),
        Some(SignInFailure::Failed)
    );
    let elsewhere = SignIn::Root {
        account: a,
        access_key_id: &root_key,
        secret: &root_secret,
    };
    assert!(kc.console_sign_in(&elsewhere, &ORIGIN).await.is_err());
}
