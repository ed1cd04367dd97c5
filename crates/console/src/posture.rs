//! The posture dashboard (governance KPIs with their trend drawn as
//! server-rendered SVG, open findings with remediation) and the policy
//! simulator (SimulatePrincipalPolicy as the signed-in principal).

use http::StatusCode;
use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use crate::layout::{api_error, error_page, frame};
use crate::xml::Find;
use crate::{Ctx, Page};

pub async fn route(ctx: &Ctx<'_>, segs: &[&str], post: bool) -> Option<Page> {
    let page = match (segs, post) {
        (["posture"], false) => dashboard(ctx).await,
        (["iam", "simulator"], false) => simulator(ctx).await,
        _ => return None,
    };
    Some(page)
}

/// The KPIs shown: (trend key, label, unit suffix).
const KPIS: &[(&str, &str, &str)] = &[
    ("pctInstancesWithRole", "Running instances with a role", "%"),
    ("activeLongTermKeys", "Active long-term access keys", ""),
    (
        "exposedCredentialFindings",
        "Exposed-credential findings",
        "",
    ),
    ("openFindings", "Open findings", ""),
];

fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(0.0)
}

/// A KPI value as shown (integers without decimals, percents with one).
fn shown(x: f64, unit: &str) -> String {
    if unit == "%" {
        format!("{x:.1}%")
    } else {
        format!("{x:.0}")
    }
}

/// The posture is the governance report of the admin endpoint, which no
/// AWS API carries: the console shows it to the account's root only.
async fn dashboard(ctx: &Ctx<'_>) -> Page {
    if !ctx.session.caller.is_root() {
        return error_page(
            ctx,
            StatusCode::FORBIDDEN,
            "Posture",
            "The posture dashboard is the account's governance report: sign in as the account's root user to see it.",
        );
    }
    let (status, v) = ctx.console.api.posture(&ctx.session.caller.account).await;
    if status != 200 {
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error_page(ctx, code, "Posture", msg);
    }
    let trend: Vec<&Value> = v
        .get("trend")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let today = trend.last().copied();
    let findings: Vec<&Value> = v
        .get("findings")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    Page::ok(frame(
        ctx,
        "Posture",
        html! {
            h1 { "Posture " span.muted { (v.get("account").and_then(Value::as_str).unwrap_or("")) } }
            div.kpis id="kpis" {
                @for (key, label, unit) in KPIS {
                    @let series: Vec<f64> = trend.iter().map(|p| num(p.get(*key))).collect();
                    div.kpi data-kpi=(key) {
                        div.kpi-label { (label) }
                        div.kpi-value { (shown(num(today.and_then(|t| t.get(*key))), unit)) }
                        (chart(&series, label))
                    }
                }
            }
            p.muted { "Trend: the last " (trend.len()) " day(s) of evaluations, one point per day." }
            h2 { "Open findings " span.muted { "(" (findings.len()) ")" } }
            table id="findings" {
                thead { tr { th { "Severity" } th { "Finding" } th { "Resource" } th { "Remediation" } } }
                tbody {
                    @for f in &findings {
                        @let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        tr data-rule=(s("rule")) {
                            td { (s("severity")) }
                            td { strong { (s("title")) } div.muted { (s("detail")) } }
                            td { code { (s("resource")) } }
                            td { (s("remediation")) }
                        }
                    }
                }
            }
        },
    ))
}

/// A line chart of a series, as inline SVG (presentation attributes
/// only: the CSP forbids inline styles). Numbers only reach the markup.
fn chart(series: &[f64], label: &str) -> Markup {
    let (w, h) = (240.0_f64, 60.0_f64);
    let max = series.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = if series.len() > 1 {
        w / (series.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, y)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 4.0 - (y / max) * (h - 8.0)
            )
        })
        .collect();
    let line = points.join(" ");
    let dots: String = points
        .iter()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            format!(r##"<circle cx="{x}" cy="{y}" r="2.5" fill="#0073bb"/>"##)
        })
        .collect();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox="-4 0 248 60" width="248" height="60" role="img" aria-label={ (label) " trend" } {
            line x1="0" y1="56" x2="240" y2="56" stroke="#d5dbdb" stroke-width="1" {}
            polyline points=(line) fill="none" stroke="#0073bb" stroke-width="2" {}
            (PreEscaped(dots))
        }
    }
}

/// SimulatePrincipalPolicy: may this principal do these actions on
/// these resources? Each result with the statements that decided it.
async fn simulator(ctx: &Ctx<'_>) -> Page {
    let principal = ctx.field("principal");
    let actions: Vec<String> = words(&ctx.field("actions"));
    let resources: Vec<String> = words(&ctx.field("resources"));
    let result = if principal.is_empty() || actions.is_empty() {
        None
    } else {
        let mut p: Vec<(String, String)> = vec![("PolicySourceArn".into(), principal.clone())];
        for (i, a) in actions.iter().enumerate() {
            p.push((format!("ActionNames.member.{}", i + 1), a.clone()));
        }
        for (i, r) in resources.iter().enumerate() {
            p.push((format!("ResourceArns.member.{}", i + 1), r.clone()));
        }
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match ctx.call("iam", "SimulatePrincipalPolicy", &refs).await {
            Ok(d) => Some(d),
            Err(e) => return api_error(ctx, "Policy simulator", &e),
        }
    };
    Page::ok(frame(
        ctx,
        "Policy simulator",
        html! {
            h1 { "Policy simulator" }
            form method="get" action="/console/iam/simulator" id="simulate" {
                label for="sim-principal" { "User, group or role ARN" }
                input type="text" id="sim-principal" name="principal" value=(principal);
                label for="sim-actions" { "Actions " span.muted { "(space or comma separated, e.g. s3:GetObject iam:ListUsers)" } }
                input type="text" id="sim-actions" name="actions" value=(ctx.field("actions"));
                label for="sim-resources" { "Resource ARNs " span.muted { "(optional; default *)" } }
                input type="text" id="sim-resources" name="resources" value=(ctx.field("resources"));
                p { button.primary type="submit" id="simulate-submit" { "Run simulation" } }
            }
            @if let Some(d) = &result {
                table id="simulation" {
                    thead { tr { th { "Action" } th { "Resource" } th { "Decision" } th { "Matched statements" } } }
                    tbody {
                        @for r in d.list("EvaluationResults", "member") {
                            tr data-action=(r.text_of("EvalActionName")) {
                                td { (r.text_of("EvalActionName")) }
                                td { (r.text_of("EvalResourceName")) }
                                td.decision { (r.text_of("EvalDecision")) }
                                td {
                                    @for m in r.list("MatchedStatements", "member") {
                                        div { code { (m.text_of("SourcePolicyId")) } " (" (m.text_of("SourcePolicyType")) ")" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_only_numbers() {
        let svg = chart(&[0.0, 50.0, 100.0], "<x>").into_string();
        assert!(
            svg.contains("points=\"0.0,56.0 120.0,30.0 240.0,4.0\""),
            "{svg}"
        );
        assert!(svg.contains("aria-label=\"&lt;x&gt; trend\""));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(shown(66.666, "%"), "66.7%");
        assert_eq!(shown(3.0, ""), "3");
        assert_eq!(words("a, b  c"), vec!["a", "b", "c"]);
    }
}
