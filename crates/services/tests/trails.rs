//! Trail delivery never skips an event: sequence order is not time order
//! (concurrent requests; SQLite numbers journaled events when it ingests
//! them), and a younger event with a lower sequence number must still
//! reach the bucket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycard_services::trails::TrailSpec;
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard};
use keycard_store::{AuditRow, SqliteStore, Store};
use serde_json::{Value, json};

const REGION: &str = "us-east-1";

fn bucket_policy(bucket: &str, trail: &str) -> String {
    let source = format!("arn:aws:cloudtrail:{REGION}:{DEFAULT_ACCOUNT}:trail/{trail}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:GetBucketAcl",
                "Resource": format!("arn:aws:s3:::{bucket}"),
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": format!("arn:aws:s3:::{bucket}/AWSLogs/{DEFAULT_ACCOUNT}/*"),
                "Condition": {"StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "aws:SourceArn": source,
                }},
            },
        ],
    })
    .to_string()
}

fn event(id: &str, time_ms: i64) -> AuditRow {
    let body = json!({
        "eventVersion": "1.08",
        "eventID": id,
        "eventName": "CreateUser",
        "eventSource": "iam.amazonaws.com",
        "awsRegion": REGION,
        "eventCategory": "Management",
        "readOnly": false,
        "recipientAccountId": DEFAULT_ACCOUNT,
    });
    AuditRow {
        seq: 0,
        event_id: id.to_string(),
        event_time_ms: time_ms,
        event_name: "CreateUser".into(),
        event_source: "iam.amazonaws.com".into(),
        username: "alice".into(),
        access_key_id: String::new(),
        account: DEFAULT_ACCOUNT.into(),
        resource_names: vec![],
        read_only: false,
        body: body.to_string(),
    }
}

/// Every event id in every log file of the bucket.
fn delivered(kc: &Keycard, bucket: &str) -> Vec<String> {
    let listing = kc
        .list_objects(bucket, "AWSLogs/", None, None, 1000)
        .unwrap();
    let mut ids = vec![];
    for o in listing.objects {
        let gz = std::fs::read(kc.object_path(&o.file)).unwrap();
        let mut raw = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)
            .unwrap();
        let doc: Value = serde_json::from_str(&raw).unwrap();
        for r in doc["Records"].as_array().unwrap() {
            ids.push(r["eventID"].as_str().unwrap().to_string());
        }
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn a_younger_event_with_a_lower_sequence_number_is_delivered() {
    let store = Arc::new(SqliteStore::memory().await.unwrap());
    let dir = std::env::temp_dir().join(format!("keycard-trails-{}", uuid::Uuid::new_v4()));
    let kc = Keycard::open(Config::new(&dir), store.clone())
        .await
        .unwrap();
    let (bucket, trail) = ("trail-logs", "inversion");
    kc.create_bucket(DEFAULT_ACCOUNT, bucket, REGION)
        .await
        .unwrap();
    kc.put_bucket_policy(bucket, &bucket_policy(bucket, trail))
        .await
        .unwrap();
    let spec = TrailSpec {
        bucket: Some(bucket.into()),
        ..TrailSpec::default()
    };
    kc.create_trail(DEFAULT_ACCOUNT, trail, spec).await.unwrap();
    kc.set_trail_logging(DEFAULT_ACCOUNT, trail, true)
        .await
        .unwrap();

    // The younger event is numbered first, the older one after it. Going
    // by event time, the first pass found only the older one settled and
    // moved the trail's cursor past the younger one for good.
    let now = keycard_services::now_ms();
    store.commit(&[], &[event("young", now)]).await.unwrap();
    store
        .commit(&[], &[event("old", now - 60_000)])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        kc.deliver_trails().await.unwrap();
        let got = delivered(&kc, bucket);
        if got.len() >= 2 {
            assert_eq!(got, ["old", "young"], "each event once");
            break;
        }
        assert!(Instant::now() < deadline, "delivered only {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kc.deliver_trails().await.unwrap();
    assert_eq!(delivered(&kc, bucket), ["old", "young"], "nothing twice");
    let _ = std::fs::remove_dir_all(dir);
}
