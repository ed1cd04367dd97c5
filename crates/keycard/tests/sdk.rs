//! End-to-end: the real aws-sdk-rust (IAM, STS, S3) against a running
//! keycard binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aws_credential_types::Credentials;
use aws_sdk_iam::config::Region;

struct Server {
    child: Child,
    endpoint: String,
    root: (String, String),
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keycard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("listening line")
        .to_string();
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    let get = |k: &str| {
        creds
            .lines()
            .find_map(|l| {
                l.strip_prefix(k)
                    .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
            })
            .unwrap()
    };
    let root = (get("aws_access_key_id"), get("aws_secret_access_key"));
    Server {
        child,
        endpoint,
        root,
        _dir: dir,
    }
}

async fn config(
    s: &Server,
    key: &str,
    secret: &str,
    token: Option<String>,
) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&s.endpoint)
        .credentials_provider(Credentials::new(key, secret, token, None, "test"))
        .load()
        .await
}

fn s3(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

const READ_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowS3ReadOnTargetBucket","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::my-app-bucket","arn:aws:s3:::my-app-bucket/*"]}]}"#;

#[tokio::test]
async fn sdk_walkthrough_iam_sts_s3() {
    let s = start();
    let root = config(&s, &s.root.0, &s.root.1, None).await;
    let iam = aws_sdk_iam::Client::new(&root);
    let sts = aws_sdk_sts::Client::new(&root);
    let who = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(who.arn(), Some("arn:aws:iam::123456789012:root"));

    // The seed: least-privilege policy, a role users may assume.
    let pol = iam
        .create_policy()
        .policy_name("EC2S3ReadPolicy")
        .policy_document(READ_POLICY)
        .send()
        .await
        .unwrap();
    let pol_arn = pol.policy().unwrap().arn().unwrap().to_string();
    assert_eq!(pol_arn, "arn:aws:iam::123456789012:policy/EC2S3ReadPolicy");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name("AppRole")
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name("AppRole")
        .policy_arn(&pol_arn)
        .send()
        .await
        .unwrap();

    // A user who may assume it.
    iam.create_user().user_name("dev").send().await.unwrap();
    iam.put_user_policy()
        .user_name("dev")
        .policy_name("assume")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::123456789012:role/AppRole"}]}"#)
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("dev")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let dev = config(&s, key.access_key_id(), key.secret_access_key(), None).await;

    // The user alone can't read the bucket or create users.
    let s3root = s3(&root);
    s3root
        .create_bucket()
        .bucket("my-app-bucket")
        .send()
        .await
        .unwrap();
    s3root
        .put_object()
        .bucket("my-app-bucket")
        .key("hello.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"hello keycard",
        ))
        .send()
        .await
        .unwrap();
    let err = s3(&dev)
        .get_object()
        .bucket("my-app-bucket")
        .key("hello.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("AccessDenied"));

    // Assume the role: the session reads the bucket, but can't write.
    let assumed = aws_sdk_sts::Client::new(&dev)
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/AppRole")
        .role_session_name("ci")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    assert!(c.access_key_id().starts_with("ASIA"));
    assert_eq!(
        assumed.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::123456789012:assumed-role/AppRole/ci"
    );
    let sess = config(
        &s,
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
    )
    .await;
    let who = aws_sdk_sts::Client::new(&sess)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/AppRole/ci")
    );
    let got = s3(&sess)
        .get_object()
        .bucket("my-app-bucket")
        .key("hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello keycard"
    );
    let err = s3(&sess)
        .put_object()
        .bucket("my-app-bucket")
        .key("new.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("AccessDenied"));
    let err = aws_sdk_iam::Client::new(&sess)
        .create_user()
        .user_name("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("AccessDenied"));

    // Detach: the very next request is denied.
    iam.detach_role_policy()
        .role_name("AppRole")
        .policy_arn(&pol_arn)
        .send()
        .await
        .unwrap();
    let err = s3(&sess)
        .get_object()
        .bucket("my-app-bucket")
        .key("hello.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("AccessDenied"));

    // Bad secret.
    let bad = config(
        &s,
        key.access_key_id(),
        "wrongwrongwrongwrongwrongwrongwrongwrong",
        None,
    )
    .await;
    let err = aws_sdk_sts::Client::new(&bad)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("SignatureDoesNotMatch")
    );
}
