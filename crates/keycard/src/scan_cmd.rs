//! `keycard scan PATH… [--git]`: hardcoded AWS credentials in files,
//! directories and git history, each key id checked against the running
//! keycard (docs/governance.md, "Scanner"). The secret value is never
//! printed: findings carry a 4-character preview.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use keycard_scan::{Kind, Layer, Match};
use serde::Serialize;
use serde_json::{Value, json};

/// Larger files are skipped (logs, dumps, artifacts).
const MAX_FILE: u64 = 10 * 1024 * 1024;
/// The JSON report's schema version.
const SCHEMA_VERSION: u32 = 1;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Files and directories to scan (directories recursively; `.git` skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also scan the lines added by every commit of the git repositories the paths are in.
    #[arg(long)]
    git: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Exit with status 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value = "high")]
    fail_on: Severity,
    #[command(flatten)]
    data: super::DataDir,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    fn sarif_level(self) -> &'static str {
        match self {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low => "note",
        }
    }
}

/// Where a match was found.
#[derive(Clone)]
struct Location {
    path: String,
    commit: Option<String>,
}

/// One finding: a match, where it is, and what keycard says about its key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    rule_id: &'static str,
    kind: &'static str,
    severity: Severity,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    line: usize,
    column: usize,
    preview: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    /// Decoded offline from the key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    /// A secret next to the id (for an id), an id next to it (otherwise).
    paired: bool,
    via: Vec<Layer>,
    /// active | inactive | deleted | unknown | unverified | none (no key id).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    fingerprint: String,
}

pub fn run(args: ScanArgs) -> ExitCode {
    match scan(&args) {
        Ok(findings) => {
            if findings.iter().any(|f| f.severity >= args.fail_on) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("keycard: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn scan(args: &ScanArgs) -> anyhow::Result<Vec<Finding>> {
    let mut raw: Vec<(Location, Match)> = Vec::new();
    for p in &args.paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        walk(p, &mut raw)?;
    }
    if args.git {
        for repo in git_roots(&args.paths)? {
            git_history(&repo, &mut raw)?;
        }
    }
    let verifier = Verifier::for_dir(&args.data.path());
    let mut statuses: BTreeMap<String, Value> = BTreeMap::new();
    for (_, m) in &raw {
        if let Some(id) = &m.key_id
            && !statuses.contains_key(id)
        {
            statuses.insert(id.clone(), verifier.lookup(id));
        }
    }
    let findings: Vec<Finding> = raw
        .into_iter()
        .map(|(loc, m)| finding(loc, m, &statuses))
        .collect();
    verifier.report(args, &findings);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Human => human(&mut out, &findings, verifier.verified())?,
        Format::Json => {
            let report = json!({
                "version": SCHEMA_VERSION,
                "tool": "keycard scan",
                "verified": verifier.verified(),
                "summary": summary(&findings),
                "findings": findings,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Format::Sarif => {
            writeln!(out, "{}", serde_json::to_string_pretty(&sarif(&findings))?)?;
        }
    }
    Ok(findings)
}

// ---------------------------------------------------------------- walking

fn walk(path: &Path, out: &mut Vec<(Location, Match)>) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        if path.file_name().is_some_and(|n| n == ".git") {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else if meta.is_file() && meta.len() <= MAX_FILE {
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .with_context(|| format!("reading {}", path.display()))?;
        if is_binary(&data) {
            return Ok(());
        }
        let loc = Location {
            path: path.display().to_string(),
            commit: None,
        };
        out.extend(
            keycard_scan::scan_bytes(&data)
                .into_iter()
                .map(|m| (loc.clone(), m)),
        );
    }
    Ok(())
}

/// A NUL byte in the first 8 KiB means binary, except gzip (which
/// [`keycard_scan::scan_bytes`] opens).
fn is_binary(data: &[u8]) -> bool {
    !data.starts_with(&[0x1f, 0x8b]) && data.iter().take(8192).any(|&b| b == 0)
}

// ---------------------------------------------------------------- git

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The distinct repositories the paths are in (a path in none is only
/// warned about: its files are still scanned).
fn git_roots(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut roots = Vec::new();
    for p in paths {
        let dir = if p.is_dir() {
            p.clone()
        } else {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let Ok(top) = git(&dir, &["rev-parse", "--show-toplevel"]) else {
            eprintln!(
                "keycard: {} is in no git repository: history not scanned",
                p.display()
            );
            continue;
        };
        let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
        if !roots.contains(&top) {
            roots.push(top);
        }
    }
    Ok(roots)
}

/// The lines one commit added to one file, with their line numbers.
struct Added {
    commit: String,
    path: String,
    text: String,
    lines: Vec<usize>,
}

/// Scan every commit's added lines (`git log -p --all`), reported with the
/// commit id and the file path relative to the repository.
fn git_history(repo: &Path, out: &mut Vec<(Location, Match)>) -> anyhow::Result<()> {
    let log = git(
        repo,
        &[
            "log",
            "-p",
            "--all",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--unified=0",
            "--format=commit %H",
        ],
    )?;
    let log = String::from_utf8_lossy(&log);
    for added in parse_log(&log) {
        let loc = Location {
            path: added.path.clone(),
            commit: Some(added.commit.clone()),
        };
        for mut m in keycard_scan::scan_text(&added.text) {
            m.line = added.lines.get(m.line - 1).copied().unwrap_or(m.line);
            out.push((loc.clone(), m));
        }
    }
    Ok(())
}

fn parse_log(log: &str) -> Vec<Added> {
    let mut all: Vec<Added> = Vec::new();
    let mut commit = String::new();
    let mut cur: Option<Added> = None;
    let mut in_header = false;
    let mut next_line = 0usize;
    for line in log.lines() {
        if let Some(c) = line.strip_prefix("commit ") {
            all.extend(cur.take());
            commit = c.trim().to_string();
            in_header = false;
        } else if line.starts_with("diff --git ") {
            all.extend(cur.take());
            in_header = true;
        } else if in_header && let Some(p) = line.strip_prefix("+++ ") {
            let path = p.strip_prefix("b/").unwrap_or(p);
            cur = (path != "/dev/null").then(|| Added {
                commit: commit.clone(),
                path: path.to_string(),
                text: String::new(),
                lines: Vec::new(),
            });
        } else if let Some(h) = line.strip_prefix("@@ ") {
            in_header = false;
            next_line = hunk_start(h);
        } else if !in_header && let Some(added) = line.strip_prefix('+') {
            if let Some(a) = cur.as_mut() {
                a.text.push_str(added);
                a.text.push('\n');
                a.lines.push(next_line);
            }
            next_line += 1;
        }
    }
    all.extend(cur);
    all.retain(|a| !a.text.is_empty());
    all
}

/// The new-file start line of a hunk header `-a,b +c,d @@`.
fn hunk_start(h: &str) -> usize {
    h.split_whitespace()
        .find_map(|w| w.strip_prefix('+'))
        .and_then(|w| w.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

// ---------------------------------------------------------------- verifying

/// Asks the keycard server running for the data dir, if any.
struct Verifier {
    server: Option<(String, String)>,
}

impl Verifier {
    fn for_dir(dir: &Path) -> Verifier {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let server = match (read("server.addr"), read("admin.token")) {
            (Some(a), Some(t)) => Some((a.trim().to_string(), t.trim().to_string())),
            _ => None,
        };
        Verifier { server }
    }

    fn verified(&self) -> bool {
        self.server.is_some()
    }

    /// Hand the key ids found to the running server, so they join the
    /// posture (rule KC-SCAN-001) until a later scan of the same paths no
    /// longer finds them. The root names what was scanned.
    fn report(&self, args: &ScanArgs, findings: &[Finding]) {
        let Some((addr, token)) = &self.server else {
            return;
        };
        let mut roots: Vec<String> = args
            .paths
            .iter()
            .map(|p| {
                std::fs::canonicalize(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string()
            })
            .collect();
        roots.sort();
        let root = format!(
            "{}{}",
            roots.join("\n"),
            if args.git { " (git)" } else { "" }
        );
        let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in findings {
            if let Some(id) = &f.access_key_id {
                let at = match &f.commit {
                    Some(c) => format!("{}:{}@{}", f.path, f.line, c),
                    None => format!("{}:{}", f.path, f.line),
                };
                hits.entry(id.clone()).or_default().push(at);
            }
        }
        let body = json!({"root": root, "hits": hits}).to_string();
        if let Err(e) = admin_post(addr, "/_keycard/admin/governance/scans", token, &body) {
            eprintln!("keycard: reporting the scan to the server: {e:#}");
        }
    }

    /// keycard's answer for `id`, or `{"status": "unverified"}`.
    fn lookup(&self, id: &str) -> Value {
        let Some((addr, token)) = &self.server else {
            return json!({"status": "unverified"});
        };
        match admin_get(addr, &format!("/_keycard/admin/access-keys/{id}"), token) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("keycard: checking {id}: {e:#}");
                json!({"status": "unverified"})
            }
        }
    }
}

/// One request to the running server's admin endpoint; the body of a 200.
fn admin_call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to the running keycard at {addr}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("keycard answered: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.trim().to_string())
}

fn admin_post(addr: &str, path: &str, token: &str, body: &str) -> anyhow::Result<()> {
    admin_call(addr, "POST", path, token, body).map(|_| ())
}

fn admin_get(addr: &str, path: &str, token: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&admin_call(
        addr, "GET", path, token, "",
    )?)?)
}

// ---------------------------------------------------------------- findings

fn rule_id(kind: Kind) -> &'static str {
    match kind {
        Kind::AccessKeyId => "aws-access-key-id",
        Kind::SecretAccessKey => "aws-secret-access-key",
        Kind::SessionToken => "aws-session-token",
        Kind::PrivateKey => "private-key",
    }
}

/// The severity table (docs/governance.md, "Scanner").
fn severity(kind: Kind, key_id: Option<&str>, status: &str, paired: bool) -> Severity {
    if kind == Kind::PrivateKey {
        return Severity::High;
    }
    let session = key_id.is_some_and(|k| k.starts_with("ASIA"));
    match (status, paired) {
        ("active", _) => Severity::Critical,
        ("none", _) => Severity::Medium,
        ("deleted", _) => Severity::Low,
        (_, true) if !session => Severity::High,
        (_, true) => Severity::Medium,
        (_, false) if session => Severity::Low,
        _ => Severity::Medium,
    }
}

/// FNV-1a over what identifies a finding across runs (never the secret).
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn finding(loc: Location, m: Match, statuses: &BTreeMap<String, Value>) -> Finding {
    let info = m.key_id.as_ref().and_then(|id| statuses.get(id));
    let s = |k: &str| {
        info.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let status = if m.key_id.is_some() {
        s("status").unwrap_or_else(|| "unverified".into())
    } else {
        "none".into()
    };
    let sev = severity(m.kind, m.key_id.as_deref(), &status, m.paired);
    let line = m.line.to_string();
    let anchor = m.key_id.clone().unwrap_or(line);
    let rule = rule_id(m.kind);
    Finding {
        rule_id: rule,
        kind: m.kind.as_str(),
        severity: sev,
        fingerprint: fingerprint(&[rule, &loc.path, &anchor]),
        path: loc.path,
        commit: loc.commit,
        line: m.line,
        column: m.column,
        preview: m.preview,
        access_key_id: m.key_id,
        account: m.account,
        paired: m.paired,
        via: m.via,
        status,
        owner_arn: s("ownerArn"),
        owner_account: s("account"),
        created_date: s("createdDate"),
        last_used_date: s("lastUsedDate"),
        deleted_date: s("deletedDate"),
        expiration: s("expiration"),
    }
}

fn summary(findings: &[Finding]) -> Value {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    json!({
        "critical": count(Severity::Critical),
        "high": count(Severity::High),
        "medium": count(Severity::Medium),
        "low": count(Severity::Low),
        "total": findings.len(),
    })
}

// ---------------------------------------------------------------- output

fn human(out: &mut impl Write, findings: &[Finding], verified: bool) -> anyhow::Result<()> {
    for f in findings {
        let at = match &f.commit {
            Some(c) => format!(
                "{}:{}:{} @{}",
                f.path,
                f.line,
                f.column,
                c.get(..12).unwrap_or(c)
            ),
            None => format!("{}:{}:{}", f.path, f.line, f.column),
        };
        let mut line = format!(
            "{:<8} {at}  {} {}",
            f.severity.as_str().to_uppercase(),
            f.kind,
            f.preview
        );
        if let Some(id) = &f.access_key_id {
            line.push_str(&format!("  key={id} status={}", f.status));
        }
        if let Some(o) = &f.owner_arn {
            line.push_str(&format!(" owner={o}"));
        } else if let Some(a) = &f.account {
            line.push_str(&format!(" account={a}"));
        }
        if !f.via.is_empty() {
            let via: Vec<&str> = f
                .via
                .iter()
                .map(|l| match l {
                    Layer::Base64 => "base64",
                    Layer::Gzip => "gzip",
                })
                .collect();
            line.push_str(&format!(" via={}", via.join("+")));
        }
        writeln!(out, "{line}")?;
    }
    let s = summary(findings);
    writeln!(
        out,
        "{} finding(s): {} critical, {} high, {} medium, {} low{}",
        findings.len(),
        s["critical"],
        s["high"],
        s["medium"],
        s["low"],
        if verified {
            ""
        } else {
            " (no keycard server running: key ids unverified)"
        }
    )?;
    Ok(())
}

const RULES: [(Kind, &str, &str); 4] = [
    (
        Kind::AccessKeyId,
        "AWS access key id",
        "An AWS access key id (AKIA/ASIA/ABIA/ACCA/A3T) is written in the file. Deactivate and delete the key, use a role (instance profile, IMDS) instead, and remove it from history.",
    ),
    (
        Kind::SecretAccessKey,
        "AWS secret access key",
        "A 40-character AWS secret access key is written in the file. Delete the key pair it belongs to and use temporary credentials from a role.",
    ),
    (
        Kind::SessionToken,
        "AWS session token",
        "An STS session token is written in the file. It stays valid until it expires; revoke the role's sessions if it is still live.",
    ),
    (
        Kind::PrivateKey,
        "Private key",
        "A PEM private key block is written in the file. Rotate the key pair and keep private keys out of code and user data.",
    ),
];

fn security_severity(kind: Kind) -> &'static str {
    match kind {
        Kind::AccessKeyId | Kind::SecretAccessKey => "9.0",
        Kind::SessionToken => "7.0",
        Kind::PrivateKey => "8.0",
    }
}

/// A SARIF 2.1.0 log, as GitHub code scanning accepts it.
fn sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(kind, name, help)| {
            json!({
                "id": rule_id(*kind),
                "name": name.replace(' ', ""),
                "shortDescription": {"text": name},
                "fullDescription": {"text": help},
                "help": {"text": help},
                "defaultConfiguration": {"level": "error"},
                "properties": {
                    "tags": ["security", "secret"],
                    "security-severity": security_severity(*kind),
                    "precision": "high",
                },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let idx = RULES.iter().position(|(k, _, _)| rule_id(*k) == f.rule_id);
            let mut text = format!("{} {} ({} severity", f.kind, f.preview, f.severity.as_str());
            if let Some(id) = &f.access_key_id {
                text.push_str(&format!(", key {id} is {}", f.status));
                if let Some(o) = &f.owner_arn {
                    text.push_str(&format!(", owned by {o}"));
                }
            }
            if let Some(c) = &f.commit {
                text.push_str(&format!(", added in commit {c}"));
            }
            text.push(')');
            json!({
                "ruleId": f.rule_id,
                "ruleIndex": idx,
                "level": f.severity.sarif_level(),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&f.path)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
                "partialFingerprints": {"keycardFinding/v1": f.fingerprint},
                "properties": {
                    "severity": f.severity.as_str(),
                    "status": f.status,
                    "accessKeyId": f.access_key_id,
                    "commit": f.commit,
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keycard",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/keycard",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A relative URI (forward slashes, no leading `./`).
fn sarif_uri(path: &str) -> String {
    let p = path.trim_start_matches("./");
    let escaped = p
        .split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    if p.starts_with('/') {
        format!("file://{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parsing_keeps_added_lines_and_numbers() {
        let log = "commit abc\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,0 +3,2 @@\n+one\n++two\ndiff --git a/y b/y\n--- a/y\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\ncommit def\n";
        let a = parse_log(log);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].commit, "abc");
        assert_eq!(a[0].path, "x");
        assert_eq!(a[0].text, "one\n+two\n");
        assert_eq!(a[0].lines, vec![3, 4]);
    }

    #[test]
    fn severity_table() {
        let k = Kind::AccessKeyId;
        assert!(severity(k, Some("AKIA"), "active", false) == Severity::Critical);
        assert!(severity(k, Some("AKIA"), "unknown", true) == Severity::High);
        assert!(severity(k, Some("AKIA"), "inactive", true) == Severity::High);
        assert!(severity(k, Some("AKIA"), "unknown", false) == Severity::Medium);
        assert!(severity(k, Some("AKIA"), "deleted", true) == Severity::Low);
        assert!(severity(k, Some("ASIA"), "unverified", false) == Severity::Low);
        assert!(severity(Kind::PrivateKey, None, "none", false) == Severity::High);
    }

    #[test]
    fn uris_are_relative_and_escaped() {
        assert_eq!(sarif_uri("./a b/c.txt"), "a%20b/c.txt");
        assert_eq!(sarif_uri("/tmp/x"), "file:///tmp/x");
    }
}
