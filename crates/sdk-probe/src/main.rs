//! `sdk-probe`: what a Rust service on an EC2 instance does. It uses the
//! SDK's default credential chain and its IMDS client, unmodified, and
//! prints what it saw as JSON for the end-to-end tests.
//!
//! ```text
//! sdk-probe once                       # GetCallerIdentity once
//! sdk-probe imds                       # the SDK's IMDS client: instance id, iam/info
//! sdk-probe soak SECONDS INTERVAL_MS   # one client, calls until SECONDS pass
//! ```

use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials;
use serde_json::json;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("once") => once().await,
        Some("imds") => imds().await,
        Some("soak") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            let every = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
            soak(secs, every).await
        }
        _ => Err("usage: sdk-probe once | imds | soak SECONDS INTERVAL_MS".to_string()),
    };
    match out {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sdk-probe: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn once() -> Result<serde_json::Value, String> {
    let conf = aws_config::load_from_env().await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let id = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("{:?}", aws_sdk_sts::error::DisplayErrorContext(e)))?;
    let creds = conf
        .credentials_provider()
        .ok_or("no credentials provider")?
        .provide_credentials()
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "arn": id.arn(),
        "userId": id.user_id(),
        "accessKeyId": creds.access_key_id(),
    }))
}

async fn imds() -> Result<serde_json::Value, String> {
    let client = aws_config::imds::Client::builder().build();
    let get = |p: &'static str| {
        let c = client.clone();
        async move {
            c.get(p)
                .await
                .map(|s| s.as_ref().to_string())
                .map_err(|e| format!("{p}: {e}"))
        }
    };
    let instance_id = get("/latest/meta-data/instance-id").await?;
    let info = get("/latest/meta-data/iam/info").await?;
    let region = get("/latest/meta-data/placement/region").await?;
    let doc = get("/latest/dynamic/instance-identity/document").await?;
    Ok(json!({
        "instanceId": instance_id,
        "info": serde_json::from_str::<serde_json::Value>(&info).map_err(|e| e.to_string())?,
        "region": region,
        "document": serde_json::from_str::<serde_json::Value>(&doc).map_err(|e| e.to_string())?,
    }))
}

async fn soak(secs: u64, every_ms: u64) -> Result<serde_json::Value, String> {
    let conf = aws_config::load_from_env().await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let provider = conf
        .credentials_provider()
        .ok_or("no credentials provider")?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut calls = 0u64;
    let mut errors = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    while Instant::now() < end {
        match sts.get_caller_identity().send().await {
            Ok(_) => calls += 1,
            Err(e) => errors.push(format!("{:?}", aws_sdk_sts::error::DisplayErrorContext(e))),
        }
        // The key the client signs with now (served from the SDK's cache).
        if let Ok(c) = provider.provide_credentials().await
            && keys.last().map(String::as_str) != Some(c.access_key_id())
        {
            keys.push(c.access_key_id().to_string());
        }
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
    Ok(json!({"calls": calls, "errors": errors, "keys": keys}))
}
