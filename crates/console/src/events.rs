//! Event history: CloudTrail's LookupEvents with its filters, and for
//! each refused call the explanation keycard recorded with it (which
//! check was denied and what no policy allowed).

use maud::{Markup, html};
use serde_json::{Value, json};

use crate::layout::{api_error, frame};
use crate::{Ctx, Page};

const TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";

/// LookupEvents' attribute keys, as the console's filter offers them.
const KEYS: &[&str] = &[
    "EventName",
    "Username",
    "EventSource",
    "ResourceName",
    "AccessKeyId",
    "ReadOnly",
];

/// One row: the record CloudTrail keeps, parsed.
struct Row {
    time: String,
    record: Value,
}

fn s<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub async fn history(ctx: &Ctx<'_>) -> Page {
    let key = ctx.field("key");
    let value = ctx.field("value");
    let errors_only = ctx.field("errors") == "1";
    let req = if KEYS.contains(&key.as_str()) && !value.is_empty() {
        json!({"MaxResults": 50, "LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]})
    } else {
        json!({"MaxResults": 50})
    };
    let out = match ctx.call_json("cloudtrail", TARGET, req).await {
        Ok(v) => v,
        Err(e) => return api_error(ctx, "Event history", &e),
    };
    let rows: Vec<Row> = out
        .get("Events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Row {
            time: e
                .get("EventTime")
                .and_then(Value::as_f64)
                .map(|t| keycard_services::sts::iso8601(t as i64))
                .unwrap_or_default(),
            record: serde_json::from_str(s(e, &["CloudTrailEvent"])).unwrap_or_default(),
        })
        .filter(|r| !errors_only || !s(&r.record, &["errorCode"]).is_empty())
        .collect();
    Page::ok(frame(
        ctx,
        "Event history",
        html! {
            h1 { "Event history" }
            (filters(&key, &value, errors_only))
            table id="events" {
                thead { tr { th { "Event time" } th { "Event name" } th { "User" } th { "Source" } th { "User agent" } th { "Error" } } }
                tbody { @for r in &rows { (row(r)) } }
            }
        },
    ))
}

fn filters(key: &str, value: &str, errors_only: bool) -> Markup {
    html! {
        form method="get" action="/console/events" id="event-filter" {
            select name="key" id="filter-key" {
                @for k in KEYS { option value=(k) selected[*k == key] { (k) } }
            }
            " "
            input type="text" name="value" id="filter-value" value=(value);
            " "
            label.inline { input type="checkbox" name="errors" value="1" id="errors-only" checked[errors_only]; " Errors only" }
            " "
            button.primary type="submit" id="filter-submit" { "Filter" }
        }
    }
}

fn row(r: &Row) -> Markup {
    let e = &r.record;
    let who = match s(e, &["userIdentity", "arn"]) {
        "" => s(e, &["userIdentity", "type"]),
        a => a,
    };
    let code = s(e, &["errorCode"]);
    let name = s(e, &["eventName"]);
    let message = s(e, &["errorMessage"]);
    html! {
        tr.event data-event=(name) {
            td { (r.time) }
            td { (name) }
            td { (who) }
            td { (s(e, &["eventSource"])) }
            td { (s(e, &["userAgent"]).chars().take(40).collect::<String>()) }
            td { (code) }
        }
        @if !code.is_empty() || !message.is_empty() {
            tr.why data-event=(name) {
                td colspan="6" {
                    details.why {
                        summary { "Why?" }
                        p.denial-message { (message) }
                        (decisions(e))
                    }
                }
            }
        }
    }
}

/// The checks decided for the call (`keycardAuthorization`), denials first.
fn decisions(e: &Value) -> Markup {
    let list: Vec<&Value> = e
        .get("keycardAuthorization")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        @if !list.is_empty() {
            table.decisions {
                tr { th { "Action" } th { "Resource" } th { "Decision" } th { "Not allowed by" } }
                @for d in &list {
                    tr {
                        td { (s(d, &["action"])) }
                        td { (s(d, &["resource"])) }
                        td { (s(d, &["decision"])) }
                        td {
                            @for m in d.get("missing").and_then(Value::as_array).into_iter().flatten() {
                                div { (m.as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
