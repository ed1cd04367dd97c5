//! `keycard audit denials`: every denial and would-be denial (soft
//! enforcement) in the audit trail, grouped by principal and action, with
//! what decided it. Asks the running server (which has every answered
//! event), or reads the data dir when none runs.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::posture::server_or_offline;

/// `90s`, `30m`, `24h`, `7d` (or `all`) as seconds.
pub fn parse_since(s: &str) -> anyhow::Result<Option<i64>> {
    if s == "all" {
        return Ok(None);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .with_context(|| format!("--since {s}: expected e.g. 30m, 24h, 7d or all"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since {s}: the unit is s, m, h or d"),
    };
    Ok(Some(n.saturating_mul(mult)))
}

pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(
    data: &crate::DataDir,
    account: Option<String>,
    principal: Option<String>,
    since: &str,
    json: bool,
) -> anyhow::Result<()> {
    let account = account.unwrap_or_else(|| keycard_services::DEFAULT_ACCOUNT.to_string());
    let since_ms = match parse_since(since)? {
        Some(secs) => (keycard_services::now() - secs) * 1000,
        None => 0,
    };
    let mut path = format!(
        "/_keycard/admin/audit/denials?account={}&sinceMs={since_ms}",
        encode(&account)
    );
    if let Some(p) = &principal {
        path.push_str(&format!("&principal={}", encode(p)));
    }
    let v = server_or_offline(data, &path, |kc| async move {
        keycard_server::governance::denials_value(&kc, &account, principal.as_deref(), since_ms)
            .await
    })
    .await?;
    if json {
        say!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(())
}

fn list(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The human-readable report.
pub fn render(v: &Value) -> String {
    let mut o = String::new();
    let principals = v
        .get("principals")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if principals.is_empty() {
        let _ = writeln!(o, "No denials.");
        return o;
    }
    for p in principals {
        let _ = writeln!(
            o,
            "{}",
            p.get("principal").and_then(Value::as_str).unwrap_or("")
        );
        for a in p
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0);
            let _ = writeln!(
                o,
                "  {:<40} denied {:>4}  would be denied {:>4}",
                a.get("action").and_then(Value::as_str).unwrap_or(""),
                n("denied"),
                n("wouldBeDenied")
            );
            let _ = writeln!(o, "    resources   {}", list(a, "resources"));
            let _ = writeln!(o, "    operations  {}", list(a, "operations"));
            let stmts = list(a, "denyingStatements");
            if !stmts.is_empty() {
                let _ = writeln!(o, "    denied by   {stmts}");
            }
            let not = list(a, "notAllowedBy");
            if !not.is_empty() {
                let _ = writeln!(o, "    no allow in {not}");
            }
            let keys = list(a, "missingContextKeys");
            if !keys.is_empty() {
                let _ = writeln!(o, "    missing keys {keys}");
            }
        }
        let _ = writeln!(o);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_units() {
        assert_eq!(parse_since("90s").unwrap(), Some(90));
        assert_eq!(parse_since("30m").unwrap(), Some(1800));
        assert_eq!(parse_since("24h").unwrap(), Some(86_400));
        assert_eq!(parse_since("7d").unwrap(), Some(604_800));
        assert_eq!(parse_since("all").unwrap(), None);
        assert!(parse_since("7w").is_err());
        assert!(parse_since("h").is_err());
        assert!(parse_since("").is_err());
    }

    #[test]
    fn principal_arns_are_encoded() {
        assert_eq!(
            encode("arn:aws:iam::1:user/a b"),
            "arn%3Aaws%3Aiam%3A%3A1%3Auser%2Fa%20b"
        );
    }
}
