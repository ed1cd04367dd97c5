//! Fail closed: when the audit store cannot record a request, the server
//! answers 503 ServiceUnavailable in the API's own error shape instead of
//! the real response.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use keycard_services::{Config, Keycard};
use keycard_store::{AuditQuery, AuditRow, Op, Record, SqliteStore, Store, StoreError};
use tower::ServiceExt;

/// SQLite whose audit appends fail while `fail` is set.
struct FlakyAudit {
    inner: SqliteStore,
    fail: AtomicBool,
}

#[async_trait]
impl Store for FlakyAudit {
    async fn load_all(&self) -> keycard_store::Result<Vec<Record>> {
        self.inner.load_all().await
    }
    async fn load_kind(&self, kind: &str) -> keycard_store::Result<Vec<Record>> {
        self.inner.load_kind(kind).await
    }
    async fn commit(&self, ops: &[Op], audit: &[AuditRow]) -> keycard_store::Result<()> {
        self.inner.commit(ops, audit).await
    }
    async fn append_audit(&self, rows: &[AuditRow]) -> keycard_store::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("audit disk full".into()));
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

async fn call(kc: &Arc<Keycard>, req: Request<Body>) -> (StatusCode, String) {
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            5555,
        ))));
    let resp = keycard_server::router(kc.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn unrecorded_requests_get_503_in_their_protocol_shape() {
    let store = Arc::new(FlakyAudit {
        inner: SqliteStore::memory().await.unwrap(),
        fail: AtomicBool::new(false),
    });
    let dir = std::env::temp_dir().join(format!("keycard-failclosed-{}", uuid::Uuid::new_v4()));
    let kc = Keycard::open(Config::new(&dir), store.clone())
        .await
        .unwrap();
    let s3_get = || {
        Request::get("/some-bucket/key")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .unwrap()
    };
    // Recorded: the real answer (an anonymous GET of a missing bucket).
    let (status, body) = call(&kc, s3_get()).await;
    assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    store.fail.store(true, Ordering::SeqCst);
    // S3 (after the handler ran): S3's XML error.
    let (status, body) = call(&kc, s3_get()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    // A query API refused before authentication (no signature): IAM's
    // ErrorResponse with a Receiver fault.
    let (status, body) = call(
        &kc,
        Request::post("/")
            .header("host", "127.0.0.1")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("Action=ListUsers&Version=2010-05-08"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");
    assert!(body.contains("<Type>Receiver</Type>"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
