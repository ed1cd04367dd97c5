//! Governance on the local admin endpoint (bearer token of the data dir):
//! posture (findings + KPIs + trend), workflow changes, and the test clock.
//! `keycard posture` is its client; the console will be another.

use http::request::Parts;
use keycard_services::Keycard;
use keycard_services::governance::{Finding, Kpis, RULES, Workflow, WorkflowError};
use serde_json::{Value, json};

/// Days of KPI history the posture shows.
const TREND_DAYS: usize = 30;

/// `(status, body)` of an admin governance request, or None when the path
/// is not one of these.
pub async fn admin(kc: &Keycard, parts: &Parts, body: &[u8]) -> Option<(u16, Value)> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let method = &parts.method;
    if path == "/_keycard/admin/governance/posture" && method == http::Method::GET {
        return Some(posture(kc, query).await);
    }
    if path == "/_keycard/admin/governance/rules" && method == http::Method::GET {
        return Some((200, json!({ "rules": RULES })));
    }
    if let Some(id) = path
        .strip_prefix("/_keycard/admin/governance/findings/")
        .and_then(|p| p.strip_suffix("/workflow"))
        && method == http::Method::POST
    {
        return Some(workflow(kc, id, body).await);
    }
    if path == "/_keycard/admin/governance/scans" && method == http::Method::POST {
        return Some(scan(kc, body).await);
    }
    if path == "/_keycard/admin/audit/denials" && method == http::Method::GET {
        return Some(denials(kc, query).await);
    }
    if path == "/_keycard/admin/policy/generate" && method == http::Method::GET {
        return Some(generate(kc, query).await);
    }
    if path == "/_keycard/admin/clock" && method == http::Method::POST {
        return Some(clock(kc, body));
    }
    if path == "/_keycard/admin/s3/lifecycle" && method == http::Method::POST {
        return Some(match kc.lifecycle_sweep().await {
            Ok(done) => (200, json!({ "applied": done })),
            Err(e) => (500, json!({"error": e.code(), "message": e.message()})),
        });
    }
    None
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `account` (default: the default account), `principal` and `sinceMs`
/// (default 0) of an admin report's query (URL-encoded values).
fn report_params(query: &str) -> (String, Option<String>, i64) {
    let account = param(query, "account")
        .map(percent_decode)
        .unwrap_or_else(|| keycard_services::DEFAULT_ACCOUNT.to_string());
    let principal = param(query, "principal").map(percent_decode);
    let since = param(query, "sinceMs")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    (account, principal, since)
}

/// `?account=&principal=&sinceMs=`: the denial report.
async fn denials(kc: &Keycard, query: &str) -> (u16, Value) {
    let (account, principal, since) = report_params(query);
    denials_value(kc, &account, principal.as_deref(), since).await
}

/// `?account=&principal=&sinceMs=`: a policy generated from what the
/// principal did since then.
async fn generate(kc: &Keycard, query: &str) -> (u16, Value) {
    let (account, principal, since) = report_params(query);
    let Some(principal) = principal else {
        return (
            400,
            json!({"error": "ValidationException", "message": "principal is required"}),
        );
    };
    generate_value(kc, &account, &principal, since).await
}

/// `keycard policy generate`'s answer: the policy, how many actions it
/// covers, and whether every event of the window was read.
pub async fn generate_value(
    kc: &Keycard,
    account: &str,
    principal: &str,
    since_ms: i64,
) -> (u16, Value) {
    let now = keycard_services::now();
    match kc
        .observe_principal(account, principal, since_ms / 1000, now + 1)
        .await
    {
        Ok((observed, complete)) => (
            200,
            json!({
                "principal": principal,
                "actions": observed.len(),
                "isComplete": complete,
                "policy": keycard_services::generate::policy(&observed),
            }),
        ),
        Err(e) => (
            e.status(),
            json!({"error": e.code(), "message": e.message()}),
        ),
    }
}

/// The denial report as `keycard audit denials --json` prints it.
pub async fn denials_value(
    kc: &Keycard,
    account: &str,
    principal: Option<&str>,
    since_ms: i64,
) -> (u16, Value) {
    match kc.denials(account, principal, since_ms).await {
        Ok(v) => (200, json!({ "account": account, "principals": v })),
        Err(e) => (
            e.status(),
            json!({"error": e.code(), "message": e.message()}),
        ),
    }
}

/// `%XX` escapes and `+` of a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b.get(i), b.get(i + 1..i + 3)) {
            (Some(b'%'), Some(h)) => match std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(x) => {
                    out.push(x);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            (Some(b'+'), _) => out.push(b' '),
            (Some(c), _) => out.push(*c),
            (None, _) => break,
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn posture(kc: &Keycard, query: &str) -> (u16, Value) {
    let account = param(query, "account").unwrap_or(keycard_services::DEFAULT_ACCOUNT);
    let all = param(query, "all").is_some_and(|v| v == "1" || v == "true");
    posture_value(kc, account, all).await
}

/// Evaluate every rule, then the account's KPIs, trend and findings (open
/// ones, or all with `all`): what `keycard posture --json` prints.
pub async fn posture_value(kc: &Keycard, account: &str, all: bool) -> (u16, Value) {
    let account = account.to_string();
    if !kc.state().accounts.contains_key(&account) {
        return (
            404,
            json!({"error": "NoSuchEntity", "message": format!("no account {account}")}),
        );
    }
    if let Err(e) = kc.evaluate_governance().await {
        return (
            503,
            json!({"error": "ServiceUnavailable", "message": e.to_string()}),
        );
    }
    let findings = kc
        .governance
        .findings(|f| f.account == account && (all || f.is_open()));
    let series = kc.governance.kpi_series(&account);
    let today = series.last().cloned();
    let trend: Vec<Value> = series
        .iter()
        .rev()
        .take(TREND_DAYS)
        .rev()
        .map(trend_point)
        .collect();
    (
        200,
        json!({
            "account": account,
            "evaluatedAt": kc.governance_now(),
            "kpis": today,
            "trend": trend,
            "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
        }),
    )
}

fn trend_point(k: &Kpis) -> Value {
    json!({
        "date": k.date,
        "exposedCredentialFindings": k.exposed_credential_findings,
        "pctInstancesWithRole": k.pct_instances_with_role,
        "activeLongTermKeys": k.active_long_term_keys,
        "openFindings": k.open_findings.values().sum::<u64>(),
    })
}

/// A finding with its rule's title, remediation and AWS equivalents.
pub fn finding_json(f: &Finding) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
    if let (Some(o), Some(r)) = (v.as_object_mut(), f.rule_def()) {
        o.insert("title".into(), r.title.into());
        o.insert("resourceType".into(), r.resource_type.into());
        o.insert("remediation".into(), r.remediation.into());
        o.insert("awsConfigRule".into(), r.config_rule.into());
        o.insert("securityHubControl".into(), r.security_hub.into());
        o.insert("prowlerCheck".into(), r.prowler.into());
    }
    v
}

async fn workflow(kc: &Keycard, id: &str, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(status) = v
        .get("status")
        .and_then(Value::as_str)
        .and_then(Workflow::parse)
    else {
        return (
            400,
            json!({"error": "InvalidInput", "message": "status must be NEW, NOTIFIED, SUPPRESSED or RESOLVED"}),
        );
    };
    let account = v
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or(keycard_services::DEFAULT_ACCOUNT);
    let note = v.get("note").and_then(Value::as_str).map(str::to_string);
    let now = kc.governance_now();
    match kc
        .governance
        .set_workflow(id, account, status, note, now, kc.store().as_ref())
        .await
    {
        Ok(f) => (200, finding_json(&f)),
        Err(WorkflowError::NotFound) => (
            404,
            json!({"error": "ResourceNotFoundException", "message": format!("no finding {id}")}),
        ),
        Err(WorkflowError::ReasonRequired) => (
            400,
            json!({"error": "InvalidInput", "message": "SUPPRESSED needs a note saying why"}),
        ),
        Err(WorkflowError::Store(m)) => (503, json!({"error": "ServiceUnavailable", "message": m})),
    }
}

/// `keycard scan` reports what it found under a root: `{"root": "…",
/// "hits": {"AKIA…": ["path:line", …]}}`. It replaces that root's last
/// report; the findings follow at once.
async fn scan(kc: &Keycard, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(root) = v
        .get("root")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    else {
        return (
            400,
            json!({"error": "InvalidInput", "message": "root is required"}),
        );
    };
    let mut hits = std::collections::BTreeMap::new();
    for (k, locs) in v
        .get("hits")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let locs: Vec<String> = locs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .take(100)
            .map(|l| l.chars().take(1024).collect())
            .collect();
        if k.len() <= 128 {
            hits.insert(k.clone(), locs);
        }
    }
    let report = keycard_services::governance::ScanReport {
        root: root.chars().take(4096).collect(),
        scanned_at: kc.governance_now(),
        hits,
    };
    if let Err(e) = kc.governance.record_scan(report, kc.store().as_ref()).await {
        return (
            503,
            json!({"error": "ServiceUnavailable", "message": e.to_string()}),
        );
    }
    match kc.evaluate_governance().await {
        Ok(d) => (200, json!({"delta": d})),
        Err(e) => (
            503,
            json!({"error": "ServiceUnavailable", "message": e.to_string()}),
        ),
    }
}

fn clock(kc: &Keycard, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let secs = v
        .get("advanceSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    match kc.advance_clock(secs) {
        Some(offset) => (200, json!({"offsetSeconds": offset})),
        None => (
            403,
            json!({"error": "AccessDenied", "message": "the clock moves only on a server started with --test-clock, forward"}),
        ),
    }
}
