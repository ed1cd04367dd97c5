//! `keycard policy simulate`: the IAM policy simulator on a principal of the
//! running server. It calls the server's own `iam:SimulatePrincipalPolicy`,
//! signed (SigV4) with the root key in `<data-dir>/credentials`, so the answer
//! is the API's answer: authorized, audited, the same engine and the same
//! collection of policies as every live call. No other credential is read.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use keycard_proto::sigv4::{Scope, sign, signing_key};
use keycard_proto::xml::{XmlNode, parse_xml};
use keycard_proto::{SecretKey, sha256_hex};
use serde_json::{Value, json};

use crate::DataDir;

#[derive(clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    data: DataDir,
    /// The user, group or role ARN whose policies are simulated.
    #[arg(long)]
    principal: String,
    /// An action to simulate (repeatable), e.g. `s3:GetObject`.
    #[arg(long = "action", required = true)]
    actions: Vec<String>,
    /// A resource ARN (repeatable; default `*`).
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// A context key and value, `KEY=VALUE` (repeat a key for a list).
    #[arg(long = "context")]
    context: Vec<String>,
    /// AWS CLI-shaped JSON (`EvaluationResults`) instead of a table.
    #[arg(long)]
    json: bool,
}

/// The root key and region of the default account, from the shared-credentials file.
struct Creds {
    key_id: String,
    secret: SecretKey,
    region: String,
}

fn read_creds(dir: &Path) -> anyhow::Result<Creds> {
    let path = dir.join("credentials");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    Ok(Creds {
        key_id: field("aws_access_key_id").context("no aws_access_key_id in credentials")?,
        secret: SecretKey::new(
            field("aws_secret_access_key").context("no aws_secret_access_key in credentials")?,
        ),
        region: field("region").unwrap_or_else(|| "us-east-1".into()),
    })
}

/// The form body of one SimulatePrincipalPolicy page.
fn form(args: &SimulateArgs, marker: Option<&str>) -> anyhow::Result<String> {
    let mut pairs: Vec<(String, String)> = vec![
        ("Action".into(), "SimulatePrincipalPolicy".into()),
        ("Version".into(), "2010-05-08".into()),
        ("PolicySourceArn".into(), args.principal.clone()),
        ("MaxItems".into(), "1000".into()),
    ];
    for (i, a) in args.actions.iter().enumerate() {
        pairs.push((format!("ActionNames.member.{}", i + 1), a.clone()));
    }
    for (i, r) in args.resources.iter().enumerate() {
        pairs.push((format!("ResourceArns.member.{}", i + 1), r.clone()));
    }
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for c in &args.context {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--context takes KEY=VALUE, not {c}");
        };
        match keys.iter_mut().find(|(x, _)| x == k) {
            Some((_, vals)) => vals.push(v.to_string()),
            None => keys.push((k.to_string(), vec![v.to_string()])),
        }
    }
    for (i, (k, vals)) in keys.iter().enumerate() {
        let p = format!("ContextEntries.member.{}", i + 1);
        pairs.push((format!("{p}.ContextKeyName"), k.clone()));
        let kind = if vals.len() > 1 {
            "stringList"
        } else {
            "string"
        };
        pairs.push((format!("{p}.ContextKeyType"), kind.into()));
        for (j, v) in vals.iter().enumerate() {
            pairs.push((format!("{p}.ContextKeyValues.member.{}", j + 1), v.clone()));
        }
    }
    if let Some(m) = marker {
        pairs.push(("Marker".into(), m.to_string()));
    }
    Ok(form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish())
}

/// `20261201T001651Z` for now.
fn amz_date() -> String {
    keycard_services::sts::iso8601(keycard_services::now()).replace(['-', ':'], "")
}

/// POST a SigV4-signed IAM query to the server; the response body.
fn call(addr: &str, creds: &Creds, body: &str) -> anyhow::Result<(u16, String)> {
    let date = amz_date();
    let scope = Scope {
        date: date.get(..8).unwrap_or_default().to_string(),
        region: creds.region.clone(),
        service: "iam".into(),
    };
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let canonical = format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{addr}\nx-amz-date:{date}\n\ncontent-type;host;x-amz-date\n{}",
        sha256_hex(body.as_bytes())
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let signature = sign(&signing_key(&creds.secret, &scope), &to_sign);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nX-Amz-Date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        creds.key_id,
        body.len()
    );
    let mut s = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to the running keycard at {addr}"))?;
    s.write_all(request.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(rest) } else { rest.into() }))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

fn position(n: Option<&XmlNode>) -> Value {
    let num = |k: &str| {
        n.and_then(|n| n.child_text(k))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    json!({"Line": num("Line"), "Column": num("Column")})
}

/// One `EvaluationResult` as the AWS CLI prints it.
fn result_json(m: &XmlNode) -> Value {
    let text = |k: &str| m.child_text(k).unwrap_or_default().to_string();
    let statements: Vec<Value> = m
        .child("MatchedStatements")
        .map(|s| {
            s.children_named("member")
                .map(|st| {
                    json!({
                        "SourcePolicyId": st.child_text("SourcePolicyId").unwrap_or_default(),
                        "SourcePolicyType": st.child_text("SourcePolicyType").unwrap_or_default(),
                        "StartPosition": position(st.child("StartPosition")),
                        "EndPosition": position(st.child("EndPosition")),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut missing: Vec<String> = Vec::new();
    for list in std::iter::once(m.child("MissingContextValues")).chain(
        m.child("ResourceSpecificResults")
            .into_iter()
            .flat_map(|r| r.children_named("member"))
            .map(|r| r.child("MissingContextValues")),
    ) {
        for k in list.into_iter().flat_map(|l| l.children_named("member")) {
            if !missing.contains(&k.text) {
                missing.push(k.text.clone());
            }
        }
    }
    let mut v = json!({
        "EvalActionName": text("EvalActionName"),
        "EvalResourceName": text("EvalResourceName"),
        "EvalDecision": text("EvalDecision"),
        "MatchedStatements": statements,
        "MissingContextValues": missing,
    });
    if let Some(b) = m
        .child("PermissionsBoundaryDecisionDetail")
        .and_then(|b| b.child_text("AllowedByPermissionsBoundary"))
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "PermissionsBoundaryDecisionDetail".into(),
            json!({"AllowedByPermissionsBoundary": b == "true"}),
        );
    }
    v
}

/// Every page of the simulation.
fn simulate_all(addr: &str, creds: &Creds, args: &SimulateArgs) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let (status, body) = call(addr, creds, &form(args, marker.as_deref())?)?;
        let doc = parse_xml(body.as_bytes())
            .map_err(|e| anyhow::anyhow!("unreadable answer ({status}): {}", e.message))?;
        if status != 200 {
            let err = doc.child("Error");
            let code = err.and_then(|e| e.child_text("Code")).unwrap_or("Error");
            let msg = err.and_then(|e| e.child_text("Message")).unwrap_or("");
            bail!("{code}: {msg}");
        }
        let result = doc
            .child("SimulatePrincipalPolicyResult")
            .context("no SimulatePrincipalPolicyResult in the answer")?;
        if let Some(list) = result.child("EvaluationResults") {
            out.extend(list.children_named("member").map(result_json));
        }
        match result.child_text("Marker") {
            Some(m) if result.child_text("IsTruncated") == Some("true") => {
                marker = Some(m.to_string());
            }
            _ => return Ok(out),
        }
    }
}

/// The table: one line per action and resource, then what decided it.
fn render(results: &[Value]) -> String {
    let mut o = String::new();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let _ = writeln!(o, "{:<36} {:<14} RESOURCE", "ACTION", "DECISION");
    for r in results {
        let _ = writeln!(
            o,
            "{:<36} {:<14} {}",
            s(r, "EvalActionName"),
            s(r, "EvalDecision"),
            s(r, "EvalResourceName")
        );
        for m in r
            .get("MatchedStatements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line = |k: &str| m.pointer(&format!("/{k}/Line")).and_then(Value::as_u64);
            let _ = writeln!(
                o,
                "    statement of {} ({}), lines {}-{}",
                s(m, "SourcePolicyId"),
                s(m, "SourcePolicyType"),
                line("StartPosition").unwrap_or(0),
                line("EndPosition").unwrap_or(0)
            );
        }
        if let Some(b) =
            r.pointer("/PermissionsBoundaryDecisionDetail/AllowedByPermissionsBoundary")
        {
            let _ = writeln!(o, "    allowed by the permissions boundary: {b}");
        }
        let missing: Vec<&str> = r
            .get("MissingContextValues")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(o, "    missing context keys: {}", missing.join(", "));
        }
    }
    o
}

/// `keycard policy simulate`.
pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let dir = args.data.path();
    let addr = std::fs::read_to_string(dir.join("server.addr")).with_context(|| {
        format!(
            "no running keycard with data dir {} (start `keycard serve` first)",
            dir.display()
        )
    })?;
    let creds = read_creds(&dir)?;
    let results = simulate_all(addr.trim(), &creds, &args)?;
    if args.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&json!({ "EvaluationResults": results }))?
        );
    } else {
        print!("{}", render(&results));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn results_are_read_from_the_xml_answer() {
        let xml = "<SimulatePrincipalPolicyResponse><SimulatePrincipalPolicyResult><EvaluationResults><member><EvalActionName>s3:GetObject</EvalActionName><EvalResourceName>*</EvalResourceName><EvalDecision>allowed</EvalDecision><MatchedStatements><member><SourcePolicyId>Read</SourcePolicyId><SourcePolicyType>user</SourcePolicyType><StartPosition><Line>3</Line><Column>6</Column></StartPosition><EndPosition><Line>8</Line><Column>6</Column></EndPosition></member></MatchedStatements><MissingContextValues><member>s3:prefix</member></MissingContextValues></member></EvaluationResults><IsTruncated>false</IsTruncated></SimulatePrincipalPolicyResult></SimulatePrincipalPolicyResponse>";
        let doc = parse_xml(xml.as_bytes()).unwrap();
        let list = doc
            .child("SimulatePrincipalPolicyResult")
            .and_then(|r| r.child("EvaluationResults"))
            .unwrap();
        let results: Vec<Value> = list.children_named("member").map(result_json).collect();
        assert_eq!(results[0]["EvalDecision"], "allowed");
        assert_eq!(
            results[0]["MatchedStatements"][0]["StartPosition"]["Line"],
            3
        );
        assert_eq!(results[0]["MissingContextValues"][0], "s3:prefix");
        let table = render(&results);
        assert!(
            table.contains("statement of Read (user), lines 3-8"),
            "{table}"
        );
        assert!(table.contains("missing context keys: s3:prefix"), "{table}");
    }
}

/// Output shapes of `keycard policy lint`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LintFormat {
    /// `file:line:col: TYPE CODE details` (column 1-based, as editors count).
    Human,
    /// Access Analyzer's ValidatePolicy response body.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

/// Policy types `keycard policy lint` takes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LintType {
    Identity,
    Resource,
    Scp,
    Rcp,
}

#[derive(clap::Args)]
pub struct LintArgs {
    /// Policy file, or `-` for standard input.
    file: String,
    /// What kind of policy the document is.
    #[arg(long = "type", value_enum, default_value = "identity")]
    ty: LintType,
    /// Access Analyzer's validatePolicyResourceType (e.g. AWS::S3::Bucket).
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long, value_enum, default_value = "human")]
    format: LintFormat,
}

/// `keycard policy lint`: Access Analyzer's policy checks, offline. Exit 1
/// when an ERROR or SECURITY_WARNING is found, 2 when the file can't be read.
pub fn lint(args: LintArgs) -> std::process::ExitCode {
    use keycard_policy::lint::{LintPolicyType, validate};
    let text = match crate::read_input(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("keycard: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let ty = match args.ty {
        LintType::Identity => LintPolicyType::Identity,
        LintType::Resource => LintPolicyType::Resource,
        LintType::Scp => LintPolicyType::ServiceControl,
        LintType::Rcp => LintPolicyType::ResourceControl,
    };
    let findings = validate(&text, ty, args.resource_type.as_deref());
    let out = match args.format {
        LintFormat::Human => human(&args.file, &findings),
        LintFormat::Json => json!({ "findings": findings }).to_string(),
        LintFormat::Sarif => sarif(&args.file, &findings).to_string(),
    };
    if !out.is_empty() {
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout().lock(), "{out}");
    }
    let blocking = findings.iter().any(|f| f.finding_type.is_blocking());
    std::process::ExitCode::from(u8::from(blocking))
}

fn human(file: &str, findings: &[keycard_policy::lint::Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let at = f.locations.first().map(|l| l.span.start);
        let (line, col) = at.map_or((1, 1), |p| (p.line, p.column + 1));
        let _ = writeln!(
            s,
            "{file}:{line}:{col}: {} {} {}",
            f.finding_type.as_str(),
            f.issue_code,
            f.finding_details
        );
    }
    s.trim_end().to_string()
}

fn sarif_level(t: keycard_policy::lint::FindingType) -> &'static str {
    use keycard_policy::lint::FindingType::*;
    match t {
        Error | SecurityWarning => "error",
        Warning => "warning",
        Suggestion => "note",
    }
}

/// SARIF 2.1.0: one rule per issue code, one result per finding; SARIF
/// columns are 1-based and the end column is the one after the region.
fn sarif(file: &str, findings: &[keycard_policy::lint::Finding]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for f in findings {
        if !seen.contains(&f.issue_code.as_str()) {
            seen.push(&f.issue_code);
            rules.push(json!({
                "id": f.issue_code,
                "name": f.issue_code,
                "helpUri": f.learn_more_link,
                "defaultConfiguration": {"level": sarif_level(f.finding_type)},
            }));
        }
    }
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let locations: Vec<Value> = f
                .locations
                .iter()
                .map(|l| {
                    json!({"physicalLocation": {
                        "artifactLocation": {"uri": file},
                        "region": {
                            "startLine": l.span.start.line,
                            "startColumn": l.span.start.column + 1,
                            "endLine": l.span.end.line,
                            "endColumn": l.span.end.column + 1,
                            "charOffset": l.span.start.offset,
                            "charLength": l.span.end.offset.saturating_sub(l.span.start.offset),
                        }
                    }})
                })
                .collect();
            json!({
                "ruleId": f.issue_code,
                "level": sarif_level(f.finding_type),
                "message": {"text": f.finding_details},
                "properties": {"findingType": f.finding_type.as_str()},
                "locations": locations,
            })
        })
        .collect();
    let src = keycard_policy::catalogue::source();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keycard policy lint",
                "informationUri": "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
                "properties": {"catalogue": format!("{} {}", src.name, src.version)},
            }},
            "results": results,
        }]
    })
}
