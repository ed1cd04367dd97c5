//! Governance: findings with a lifecycle, KPIs and their daily trend,
//! evaluated continuously over the live state (seed 003's detective
//! guardrails). Rules live in `rules`; this module keeps what they found.
//!
//! A finding is identified by (rule, resource). Each evaluation observes a
//! set of them: a new one opens (workflow NEW), one seen again updates its
//! last observation, one no longer seen resolves by itself (RESOLVED, with
//! its time, which the mean-time-to-remediate KPI uses), one seen after
//! resolving reopens. Suppression (with a reason) is a workflow status the
//! evaluation keeps. Findings and the daily KPI series are stored records
//! (kinds `finding` and `kpi`), so both survive restarts.

pub mod rules;

use std::collections::BTreeMap;
use std::sync::Mutex;

use keycard_store::{Op, Store};
use serde::{Deserialize, Serialize};

pub use rules::{Facts, Observation, RULES, Rule, Severity};

use crate::state::State;

/// Record kinds this module owns (not entities of the read model).
pub const KINDS: &[&str] = &["finding", "kpi", "scan", "exfil"];

/// ASFF `Workflow.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Workflow {
    New,
    Notified,
    Suppressed,
    Resolved,
}

impl Workflow {
    pub fn parse(s: &str) -> Option<Workflow> {
        match s {
            "NEW" => Some(Workflow::New),
            "NOTIFIED" => Some(Workflow::Notified),
            "SUPPRESSED" => Some(Workflow::Suppressed),
            "RESOLVED" => Some(Workflow::Resolved),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::New => "NEW",
            Workflow::Notified => "NOTIFIED",
            Workflow::Suppressed => "SUPPRESSED",
            Workflow::Resolved => "RESOLVED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `<rule>/<sha256(resource) prefix>`: stable for (rule, resource).
    pub id: String,
    pub rule: String,
    pub account: String,
    pub resource: String,
    pub severity: Severity,
    pub detail: String,
    pub first_observed: i64,
    pub last_observed: i64,
    /// Set while the state no longer matches.
    pub resolved_at: Option<i64>,
    pub workflow: Workflow,
    /// Why it was suppressed (or a note from whoever changed the workflow).
    #[serde(default)]
    pub note: Option<String>,
    /// How many times it opened (a resolved finding can come back).
    #[serde(default = "one")]
    pub occurrences: u32,
    pub updated_at: i64,
}

fn one() -> u32 {
    1
}

impl Finding {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
    /// Open and not suppressed: what posture and KPIs count.
    pub fn is_active(&self) -> bool {
        self.is_open() && self.workflow != Workflow::Suppressed
    }
    pub fn rule_def(&self) -> Option<&'static Rule> {
        rules::find(&self.rule)
    }
}

pub fn finding_id(rule: &str, resource: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(resource.as_bytes());
    format!("{rule}/{}", hex::encode(h.get(..10).unwrap_or_default()))
}

/// One account's KPIs on one day (the last evaluation of that day).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kpis {
    pub account: String,
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub evaluated_at: i64,
    pub running_instances: u64,
    pub running_instances_with_role: u64,
    /// Percent of running instances with a role (100 with none running).
    pub pct_instances_with_role: f64,
    /// Mean seconds from launch-without-role finding to its resolution,
    /// over every such finding resolved so far; None before the first.
    pub mttr_no_role_seconds: Option<f64>,
    pub active_long_term_keys: u64,
    pub open_findings: BTreeMap<String, u64>,
    pub exposed_credential_findings: u64,
}

/// What one evaluation changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    pub opened: usize,
    pub reopened: usize,
    pub resolved: usize,
}

#[derive(Default)]
struct Book {
    findings: BTreeMap<String, Finding>,
    /// `account/date` -> KPIs.
    kpis: BTreeMap<String, Kpis>,
    /// Root -> the last scan of it.
    scans: BTreeMap<String, ScanReport>,
    /// Instance credentials used from elsewhere, by sighting key.
    sightings: BTreeMap<String, crate::binding::Sighting>,
}

/// The findings and KPI series of a keycard, kept in memory and stored.
#[derive(Default)]
pub struct Governance {
    book: Mutex<Book>,
    /// One evaluation at a time (they read, compare and write the book).
    eval_lock: tokio::sync::Mutex<()>,
}

fn day(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}

impl Governance {
    /// Load the stored findings and KPI series.
    pub async fn load(store: &dyn Store) -> keycard_store::Result<Governance> {
        let mut book = Book::default();
        for r in store.load_kind("finding").await? {
            match serde_json::from_str::<Finding>(&r.value) {
                Ok(f) => {
                    book.findings.insert(f.id.clone(), f);
                }
                Err(e) => {
                    tracing::warn!(key = %r.key, error = %e, "skipping an unreadable finding")
                }
            }
        }
        for r in store.load_kind("kpi").await? {
            if let Ok(k) = serde_json::from_str::<Kpis>(&r.value) {
                book.kpis.insert(r.key, k);
            }
        }
        for r in store.load_kind("scan").await? {
            if let Ok(s) = serde_json::from_str::<ScanReport>(&r.value) {
                book.scans.insert(s.root.clone(), s);
            }
        }
        for r in store.load_kind("exfil").await? {
            if let Ok(s) = serde_json::from_str::<crate::binding::Sighting>(&r.value) {
                book.sightings.insert(s.key(), s);
            }
        }
        Ok(Governance {
            book: Mutex::new(book),
            eval_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluate every rule at `now`, reconcile the findings, record today's
    /// KPIs, and store what changed.
    pub async fn evaluate(
        &self,
        st_obs: Vec<Observation>,
        kpi_input: KpiInput,
        now: i64,
        store: &dyn Store,
    ) -> keycard_store::Result<Delta> {
        let _one = self.eval_lock.lock().await;
        // Worked out on a copy and swapped in only once stored: a failed
        // write leaves memory as the store has it, and the next evaluation
        // writes the same changes again.
        let (mut findings, mut new_kpis) = {
            let book = self.book();
            (book.findings.clone(), Vec::new())
        };
        let (mut ops, delta) = reconcile(&mut findings, st_obs, now);
        {
            let book = self.book();
            for k in kpis(&findings, &kpi_input, now) {
                let key = format!("{}/{}", k.account, k.date);
                if book.kpis.get(&key) != Some(&k) {
                    ops.push(Op::put("kpi", key.clone(), to_json(&k)));
                    new_kpis.push((key, k));
                }
            }
        }
        store.commit(&ops, &[]).await?;
        let mut book = self.book();
        book.findings = findings;
        book.kpis.extend(new_kpis);
        Ok(delta)
    }

    /// Replace what the last scan of `report.root` found.
    pub async fn record_scan(
        &self,
        report: ScanReport,
        store: &dyn Store,
    ) -> keycard_store::Result<()> {
        let key = finding_id("scan", &report.root);
        store
            .commit(&[Op::put("scan", key, to_json(&report))], &[])
            .await?;
        self.book().scans.insert(report.root.clone(), report);
        Ok(())
    }

    /// Fold one call into its sighting and store it. Stored before memory
    /// changes, as evaluations are.
    pub async fn record_sighting(
        &self,
        fresh: crate::binding::Sighting,
        source: &str,
        call: &str,
        denied: bool,
        at: i64,
        store: &dyn Store,
    ) -> keycard_store::Result<()> {
        let _one = self.eval_lock.lock().await;
        // Only this sighting is copied, updated and stored; memory follows
        // once the store has it.
        let key = fresh.key();
        let mut s = self.book().sightings.get(&key).cloned().unwrap_or(fresh);
        s.add(source, call, denied, at);
        store
            .commit(&[Op::put("exfil", key.clone(), to_json(&s))], &[])
            .await?;
        self.book().sightings.insert(key, s);
        Ok(())
    }

    /// Every sighting, most recent first.
    pub fn sightings(&self) -> Vec<crate::binding::Sighting> {
        let mut v: Vec<_> = self.book().sightings.values().cloned().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        v
    }

    /// Every key id a scan found, with where (all roots merged).
    pub fn scan_hits(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self.book().scans.values() {
            for (k, locs) in &s.hits {
                out.entry(k.clone())
                    .or_default()
                    .extend(locs.iter().cloned());
            }
        }
        out
    }

    /// Findings, newest change first, filtered.
    pub fn findings(&self, filter: impl Fn(&Finding) -> bool) -> Vec<Finding> {
        let mut v: Vec<Finding> = self
            .book()
            .findings
            .values()
            .filter(|f| filter(f))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// The KPI series of an account, oldest day first.
    pub fn kpi_series(&self, account: &str) -> Vec<Kpis> {
        self.book()
            .kpis
            .values()
            .filter(|k| k.account == account)
            .cloned()
            .collect()
    }

    /// Set a finding's workflow status (SUPPRESSED needs a reason).
    pub async fn set_workflow(
        &self,
        id: &str,
        account: &str,
        status: Workflow,
        note: Option<String>,
        now: i64,
        store: &dyn Store,
    ) -> Result<Finding, WorkflowError> {
        let _one = self.eval_lock.lock().await;
        if status == Workflow::Suppressed && note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(WorkflowError::ReasonRequired);
        }
        let f = {
            let mut book = self.book();
            let f = book
                .findings
                .get_mut(id)
                .filter(|f| f.account == account)
                .ok_or(WorkflowError::NotFound)?;
            f.workflow = status;
            f.note = note;
            f.updated_at = now;
            f.clone()
        };
        store
            .commit(&[Op::put("finding", f.id.clone(), to_json(&f))], &[])
            .await
            .map_err(|e| WorkflowError::Store(e.to_string()))?;
        Ok(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("no such finding")]
    NotFound,
    #[error("suppressing a finding needs a reason")]
    ReasonRequired,
    #[error("{0}")]
    Store(String),
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Open, update, resolve and reopen findings against what was observed.
fn reconcile(
    findings: &mut BTreeMap<String, Finding>,
    observed: Vec<Observation>,
    now: i64,
) -> (Vec<Op>, Delta) {
    let mut delta = Delta::default();
    let mut ops = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for o in observed {
        let id = finding_id(o.rule, &o.resource);
        seen.insert(id.clone());
        let is_new = !findings.contains_key(&id);
        let f = findings.entry(id.clone()).or_insert_with(|| Finding {
            id,
            rule: o.rule.to_string(),
            account: o.account.clone(),
            resource: o.resource.clone(),
            severity: o.severity,
            detail: o.detail.clone(),
            first_observed: now,
            last_observed: now,
            resolved_at: None,
            workflow: Workflow::New,
            note: None,
            occurrences: 1,
            updated_at: now,
        });
        let before = f.clone();
        if is_new {
            delta.opened += 1;
        } else if f.resolved_at.is_some() {
            delta.reopened += 1;
            f.resolved_at = None;
            f.first_observed = now;
            f.workflow = Workflow::New;
            f.note = None;
            f.occurrences += 1;
        }
        f.severity = o.severity;
        f.detail = o.detail;
        f.last_observed = now;
        let same = Finding {
            last_observed: before.last_observed,
            updated_at: before.updated_at,
            ..f.clone()
        } == before;
        // The observation time alone is stored at most hourly, not once
        // per evaluation.
        if is_new || !same || now / 3600 != before.last_observed / 3600 {
            if !same {
                f.updated_at = now;
            }
            ops.push(Op::put("finding", f.id.clone(), to_json(&*f)));
        }
    }
    for f in findings.values_mut() {
        if f.resolved_at.is_none() && !seen.contains(&f.id) {
            delta.resolved += 1;
            f.resolved_at = Some(now);
            f.workflow = Workflow::Resolved;
            f.updated_at = now;
            ops.push(Op::put("finding", f.id.clone(), to_json(&*f)));
        }
    }
    (ops, delta)
}

/// Counts from the state the KPIs need, per account.
#[derive(Debug, Default, Clone)]
pub struct KpiInput {
    /// account -> (running instances, running with a role, active long-term keys).
    pub per_account: BTreeMap<String, (u64, u64, u64)>,
}

impl KpiInput {
    pub fn from_state(st: &State) -> KpiInput {
        let mut per: BTreeMap<String, (u64, u64, u64)> =
            st.accounts.keys().map(|a| (a.clone(), (0, 0, 0))).collect();
        for i in st.instances.values().filter(|i| i.is_running()) {
            let e = per.entry(i.account.clone()).or_default();
            e.0 += 1;
            if i.profile.is_some() {
                e.1 += 1;
            }
        }
        for k in st.access_keys.values() {
            if k.status == crate::model::KeyStatus::Active {
                per.entry(k.account.clone()).or_default().2 += 1;
            }
        }
        KpiInput { per_account: per }
    }
}

fn kpis(findings: &BTreeMap<String, Finding>, input: &KpiInput, now: i64) -> Vec<Kpis> {
    let date = day(now);
    input
        .per_account
        .iter()
        .map(|(account, (running, with_role, keys))| {
            let mine = || findings.values().filter(move |f| &f.account == account);
            let mut open: BTreeMap<String, u64> = Severity::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
            for f in mine().filter(|f| f.is_active()) {
                *open.entry(f.severity.as_str().to_string()).or_default() += 1;
            }
            let fixed: Vec<f64> = mine()
                .filter(|f| f.rule == rules::EC2_NO_PROFILE)
                .filter_map(|f| f.resolved_at.map(|r| (r - f.first_observed) as f64))
                .collect();
            Kpis {
                account: account.clone(),
                date: date.clone(),
                evaluated_at: now,
                running_instances: *running,
                running_instances_with_role: *with_role,
                pct_instances_with_role: if *running == 0 {
                    100.0
                } else {
                    (*with_role as f64) * 100.0 / (*running as f64)
                },
                mttr_no_role_seconds: (!fixed.is_empty())
                    .then(|| fixed.iter().sum::<f64>() / fixed.len() as f64),
                active_long_term_keys: *keys,
                open_findings: open,
                exposed_credential_findings: mine()
                    .filter(|f| f.is_active())
                    .filter(|f| f.rule_def().is_some_and(|r| r.exposed_credential))
                    .count() as u64,
            }
        })
        .collect()
}

/// Secrets in EC2 user data (base64 as stored; plain, base64 and gzip
/// layers opened by `keycard-scan`): each access key id found, and one
/// entry per secret key, session token or private key without an id.
/// AWS's documentation keys are allow-listed by the scanner.
pub fn user_data_secrets(data: &[u8]) -> Vec<String> {
    use keycard_scan::Kind;
    let mut found: Vec<String> = keycard_scan::scan_bytes(data)
        .into_iter()
        .map(|m| match (m.key_id, m.kind) {
            (Some(id), _) => id,
            (None, Kind::SecretAccessKey) => "secret-access-key".into(),
            (None, Kind::SessionToken) => "session-token".into(),
            (None, _) => "private-key".into(),
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Where `keycard scan` last found each key id under one scanned root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    pub root: String,
    pub scanned_at: i64,
    /// key id -> locations (`path:line`, with `@commit` from git history).
    pub hits: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests;
