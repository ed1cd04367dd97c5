//! `keycard posture`: findings and KPIs as a table (or JSON), from the
//! running server, or from the data dir when none runs.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{DataDir, admin_request};

/// A report from the running server's admin endpoint `path` (it holds
/// every answered event and the live state), or, when no server runs on
/// `dir`, computed by `offline` on the data dir itself.
pub async fn server_or_offline<F, Fut>(
    data: &DataDir,
    path: &str,
    offline: F,
) -> anyhow::Result<Value>
where
    F: FnOnce(std::sync::Arc<keycard_services::Keycard>) -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let dir = data.path();
    if let Ok(addr) = std::fs::read_to_string(dir.join("server.addr")) {
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .context("reading admin.token of the running server")?;
        let out = admin_request(addr.trim(), "GET", path, token.trim(), "").await?;
        return serde_json::from_str(&out).context("the server's answer is not JSON");
    }
    let store = data.open_store().await?;
    let kc = keycard_services::Keycard::open(keycard_services::Config::new(&dir), store)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (status, v) = offline(kc).await;
    if status != 200 {
        bail!("{v}");
    }
    Ok(v)
}

pub async fn run(
    data: &DataDir,
    json: bool,
    account: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let account = account.unwrap_or_else(|| keycard_services::DEFAULT_ACCOUNT.to_string());
    let path = format!(
        "/_keycard/admin/governance/posture?account={account}&all={}",
        u8::from(all)
    );
    let v = server_or_offline(data, &path, |kc| async move {
        let out = keycard_server::governance::posture_value(&kc, &account, all).await;
        kc.audit.flush().await;
        out
    })
    .await?;
    if json {
        say!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(())
}

fn n(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The human-readable posture.
pub fn render(v: &Value) -> String {
    let mut o = String::new();
    let account = v.get("account").and_then(Value::as_str).unwrap_or("");
    let at = v.get("evaluatedAt").and_then(Value::as_i64).unwrap_or(0);
    let _ = writeln!(
        o,
        "keycard posture: account {account}, evaluated {}\n",
        keycard_services::sts::iso8601(at)
    );
    let k = v.get("kpis").cloned().unwrap_or(Value::Null);
    let _ = writeln!(o, "KPIs");
    let running = n(&k, "runningInstances");
    let _ = writeln!(
        o,
        "  running instances with a role     {:>4} / {:<4} {:>5.1}%",
        n(&k, "runningInstancesWithRole"),
        running,
        n(&k, "pctInstancesWithRole")
    );
    let mttr = k
        .get("mttrNoRoleSeconds")
        .and_then(Value::as_f64)
        .map(duration)
        .unwrap_or_else(|| "none remediated yet".into());
    let _ = writeln!(o, "  mean time to remediate (no role)  {mttr}");
    let _ = writeln!(
        o,
        "  active long-term access keys      {}",
        n(&k, "activeLongTermKeys")
    );
    let sev = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"];
    let open: Vec<String> = sev
        .iter()
        .map(|s| {
            format!(
                "{s} {}",
                k.pointer(&format!("/openFindings/{s}"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            )
        })
        .collect();
    let _ = writeln!(o, "  open findings                     {}", open.join("  "));
    let _ = writeln!(
        o,
        "  exposed-credential findings       {}\n",
        n(&k, "exposedCredentialFindings")
    );
    let _ = writeln!(o, "Exposed-credential findings per day");
    for p in v
        .get("trend")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let c = n(p, "exposedCredentialFindings") as usize;
        let _ = writeln!(
            o,
            "  {}  {:>3}  {}",
            p.get("date").and_then(Value::as_str).unwrap_or(""),
            c,
            "#".repeat(c.min(60))
        );
    }
    let findings = v
        .get("findings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(o, "\nFindings ({})", findings.len());
    if !findings.is_empty() {
        let _ = writeln!(
            o,
            "  {:<13} {:<10} {:<10} {:<55} TITLE",
            "SEVERITY", "RULE", "STATUS", "RESOURCE"
        );
    }
    let mut sorted = findings;
    sorted.sort_by_key(|f| {
        let s = f.get("severity").and_then(Value::as_str).unwrap_or("");
        sev.iter().position(|x| *x == s).unwrap_or(sev.len())
    });
    for f in &sorted {
        let g = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let _ = writeln!(
            o,
            "  {:<13} {:<10} {:<10} {:<55} {}",
            g("severity"),
            g("rule"),
            g("workflow"),
            g("resource"),
            g("title")
        );
    }
    o
}
