//! `keycard policy generate`: the identity policy a principal needs, from
//! what it did (allowed, denied or let through by soft enforcement) in the
//! audit trail. Prints a document ready for `aws iam put-role-policy`.

use anyhow::{Context as _, bail};

use crate::denials_cmd::{encode, parse_since};
use crate::posture::server_or_offline;

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub data: crate::DataDir,
    /// The IAM role or user, e.g. arn:aws:iam::123456789012:role/App
    /// (its sessions count as the role).
    #[arg(long)]
    pub principal: String,
    /// How far back: 90s, 30m, 24h, 7d or all.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Account (default: the data dir's default account).
    #[arg(long)]
    pub account: Option<String>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(generate(args))
}

async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let account = args
        .account
        .unwrap_or_else(|| keycard_services::DEFAULT_ACCOUNT.to_string());
    let since_ms = match parse_since(&args.since)? {
        Some(secs) => (keycard_services::now() - secs) * 1000,
        None => 0,
    };
    let principal = args.principal;
    let path = format!(
        "/_keycard/admin/policy/generate?account={}&principal={}&sinceMs={since_ms}",
        encode(&account),
        encode(&principal)
    );
    let v = server_or_offline(&args.data, &path, |kc| async move {
        keycard_server::governance::generate_value(&kc, &account, &principal, since_ms).await
    })
    .await?;
    if let Some(e) = v.get("error") {
        bail!(
            "{e}: {}",
            v.get("message").unwrap_or(&serde_json::Value::Null)
        );
    }
    if v.get("actions").and_then(serde_json::Value::as_u64) == Some(0) {
        eprintln!("keycard: no calls of {} in that window", v["principal"]);
    }
    if v.get("isComplete").and_then(serde_json::Value::as_bool) == Some(false) {
        eprintln!(
            "keycard: the window has more events than one generation reads; the policy covers the newest"
        );
    }
    say!(
        "{}",
        serde_json::to_string_pretty(v.get("policy").unwrap_or(&serde_json::Value::Null))?
    );
    Ok(())
}
