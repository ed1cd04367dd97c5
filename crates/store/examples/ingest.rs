//! How fast journaled audit events move into the table (CPU per event).
//! `cargo run --release -p keycard-store --example ingest [events]`
use std::time::Instant;

use keycard_store::{AuditRow, SqliteStore, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = std::env::temp_dir().join(format!("kc-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let s = SqliteStore::open(&dir.join("keycard.db"))
        .await
        .expect("open");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1400));
    let rows: Vec<AuditRow> = (0..n)
        .map(|i| AuditRow {
            event_id: format!("0193a1b2-{i:012}"),
            event_time_ms: 1_700_000_000_000 + i as i64,
            event_name: "GetObject".into(),
            event_source: "s3.amazonaws.com".into(),
            username: "bench".into(),
            access_key_id: "AKIAEXAMPLEEXAMPLE12".into(),
            account: "123456789012".into(),
            resource_names: vec![
                "arn:aws:s3:::bench-bucket/k".into(),
                "k".into(),
                "arn:aws:s3:::bench-bucket".into(),
                "bench-bucket".into(),
            ],
            read_only: true,
            body: body.clone(),
            ..AuditRow::default()
        })
        .collect();
    let t = Instant::now();
    for chunk in rows.chunks(4) {
        s.append_audit(chunk).await.expect("append");
    }
    let appended = t.elapsed();
    let t = Instant::now();
    s.ingest_journal().await.expect("ingest");
    let ingested = t.elapsed();
    println!(
        "append: {:.2} µs/event   ingest: {:.2} µs/event",
        appended.as_secs_f64() * 1e6 / n as f64,
        ingested.as_secs_f64() * 1e6 / n as f64
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
