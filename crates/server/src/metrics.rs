//! Prometheus metrics at `GET /metrics` (admin bearer token): requests by
//! service, operation and error code, denials by policy, latency per
//! service, and the governance KPIs. Counters are process-wide.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use keycard_services::Keycard;
use keycard_services::governance::Severity;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Error codes that mean "IAM said no" (as opposed to a bad signature).
const DENIALS: [&str; 3] = [
    "AccessDenied",
    "UnauthorizedOperation",
    "AccessDeniedException",
];

#[derive(Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Nested maps (service -> operation -> error code or "" -> count): a
/// request that has been counted before is counted without allocating.
type Requests = BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>;

#[derive(Default)]
struct Counters {
    requests: Requests,
    latency: BTreeMap<String, Latency>,
}

impl Counters {
    /// (service, operation, code, count), in that order.
    fn request_counts(&self) -> impl Iterator<Item = (&str, &str, &str, u64)> {
        self.requests.iter().flat_map(|(s, ops)| {
            ops.iter().flat_map(move |(op, codes)| {
                codes
                    .iter()
                    .map(move |(code, n)| (s.as_str(), op.as_str(), code.as_str(), *n))
            })
        })
    }
}

/// Apply `f` to the value under `key`, inserting a default (and
/// allocating the key) only when it is missing.
fn with_slot<V: Default>(m: &mut BTreeMap<String, V>, key: &str, f: impl FnOnce(&mut V)) {
    match m.get_mut(key) {
        Some(v) => f(v),
        None => f(m.entry(key.to_string()).or_default()),
    }
}

static COUNTERS: LazyLock<Mutex<Counters>> = LazyLock::new(Default::default);

/// Count one answered request.
pub fn record(source: &str, operation: &str, code: Option<&str>, took: Duration) {
    let service = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    let mut c = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    with_slot(&mut c.requests, service, |ops| {
        with_slot(ops, operation, |codes| {
            with_slot(codes, code.unwrap_or(""), |n| *n += 1);
        });
    });
    let secs = took.as_secs_f64();
    with_slot(&mut c.latency, service, |l| {
        for (b, bound) in l.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
        l.count += 1;
        l.sum += secs;
    });
}

/// Label value escaped as the exposition format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition, text format 0.0.4.
pub fn render(kc: &Keycard) -> String {
    let mut o = String::new();
    {
        let c = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
        header(
            &mut o,
            "keycard_requests_total",
            "counter",
            "API requests answered, by service, operation and AWS error code (empty on success).",
        );
        for (s, op, code, n) in c.request_counts() {
            let _ = writeln!(
                o,
                "keycard_requests_total{{service=\"{}\",operation=\"{}\",code=\"{}\"}} {n}",
                esc(s),
                esc(op),
                esc(code)
            );
        }
        header(
            &mut o,
            "keycard_denials_total",
            "counter",
            "Requests refused by IAM policy evaluation, by service and operation.",
        );
        let mut denials: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (s, op, code, n) in c.request_counts() {
            if DENIALS.contains(&code) {
                *denials.entry((s, op)).or_default() += n;
            }
        }
        for ((s, op), n) in denials {
            let _ = writeln!(
                o,
                "keycard_denials_total{{service=\"{}\",operation=\"{}\"}} {n}",
                esc(s),
                esc(op)
            );
        }
        header(
            &mut o,
            "keycard_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to its answer (event committed), by service.",
        );
        for (s, l) in &c.latency {
            for (b, bound) in l.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    o,
                    "keycard_request_duration_seconds_bucket{{service=\"{}\",le=\"{bound}\"}} {b}",
                    esc(s)
                );
            }
            let _ = writeln!(
                o,
                "keycard_request_duration_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {}",
                esc(s),
                l.count
            );
            let _ = writeln!(
                o,
                "keycard_request_duration_seconds_sum{{service=\"{}\"}} {}",
                esc(s),
                l.sum
            );
            let _ = writeln!(
                o,
                "keycard_request_duration_seconds_count{{service=\"{}\"}} {}",
                esc(s),
                l.count
            );
        }
    }
    governance(kc, &mut o);
    o
}

/// A KPI gauge: name, help, and its value from a day's KPIs.
type Gauge = (
    &'static str,
    &'static str,
    fn(&keycard_services::governance::Kpis) -> Option<f64>,
);

/// The latest KPIs of each account, and open findings by severity.
fn governance(kc: &Keycard, o: &mut String) {
    let accounts: Vec<String> = kc.state().accounts.keys().cloned().collect();
    let latest: Vec<_> = accounts
        .iter()
        .filter_map(|a| kc.governance.kpi_series(a).pop())
        .collect();
    header(
        o,
        "keycard_findings_open",
        "gauge",
        "Open, unsuppressed governance findings at the last evaluation.",
    );
    for k in &latest {
        for s in Severity::ALL {
            let n = k.open_findings.get(s.as_str()).copied().unwrap_or(0);
            let _ = writeln!(
                o,
                "keycard_findings_open{{account=\"{}\",severity=\"{}\"}} {n}",
                esc(&k.account),
                s.as_str()
            );
        }
    }
    let gauges: [Gauge; 4] = [
        (
            "keycard_instances_with_role_ratio",
            "Share of running instances that have a role (1 with none running).",
            |k| Some(k.pct_instances_with_role / 100.0),
        ),
        (
            "keycard_active_long_term_keys",
            "Active long-term (AKIA) access keys, root keys included.",
            |k| Some(k.active_long_term_keys as f64),
        ),
        (
            "keycard_exposed_credential_findings",
            "Open findings of exposed credentials (user data, root keys, keys left after a migration).",
            |k| Some(k.exposed_credential_findings as f64),
        ),
        (
            "keycard_mttr_no_role_seconds",
            "Mean seconds to give a role to an instance launched without one.",
            |k| k.mttr_no_role_seconds,
        ),
    ];
    for (name, help, f) in gauges {
        header(o, name, "gauge", help);
        for k in &latest {
            if let Some(v) = f(k) {
                let _ = writeln!(o, "{name}{{account=\"{}\"}} {v}", esc(&k.account));
            }
        }
    }
}
