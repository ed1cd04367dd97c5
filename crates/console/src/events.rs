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

/// What the filter form asks for; it travels in the "Older events" link.
struct Filter {
    key: String,
    value: String,
    errors_only: bool,
    from: String,
    to: String,
}

impl Filter {
    fn of(ctx: &Ctx<'_>) -> Filter {
        Filter {
            key: ctx.field("key"),
            value: ctx.field("value"),
            errors_only: ctx.field("errors") == "1",
            from: ctx.field("from"),
            to: ctx.field("to"),
        }
    }

    /// LookupEvents' input for this filter and page.
    fn request(&self, next: &str) -> Value {
        let mut req = serde_json::Map::new();
        req.insert("MaxResults".into(), json!(50));
        if KEYS.contains(&self.key.as_str()) && !self.value.is_empty() {
            req.insert(
                "LookupAttributes".into(),
                json!([{"AttributeKey": self.key, "AttributeValue": self.value}]),
            );
        }
        if let Some(t) = rfc3339(&self.from) {
            req.insert("StartTime".into(), json!(t));
        }
        if let Some(t) = rfc3339(&self.to) {
            req.insert("EndTime".into(), json!(t));
        }
        if !next.is_empty() {
            req.insert("NextToken".into(), json!(next));
        }
        Value::Object(req)
    }

    /// The link to the next (older) page.
    fn older(&self, next: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("key", &self.key)
            .append_pair("value", &self.value)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("next", next);
        if self.errors_only {
            q.append_pair("errors", "1");
        }
        format!("/console/events?{}", q.finish())
    }
}

/// A `datetime-local` value (`2026-12-01T10:00`, taken as UTC) or an RFC
/// 3339 time as LookupEvents takes it; None when empty.
fn rfc3339(v: &str) -> Option<String> {
    let v = v.trim();
    match v.len() {
        0 => None,
        16 => Some(format!("{v}:00Z")),
        19 => Some(format!("{v}Z")),
        _ => Some(v.to_string()),
    }
}

pub async fn history(ctx: &Ctx<'_>) -> Page {
    let f = Filter::of(ctx);
    let out = match ctx
        .call_json("cloudtrail", TARGET, f.request(&ctx.field("next")))
        .await
    {
        Ok(v) => v,
        Err(e) => return api_error(ctx, "Event history", &e),
    };
    let next = out.get("NextToken").and_then(Value::as_str).unwrap_or("");
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
        .filter(|r| !f.errors_only || !s(&r.record, &["errorCode"]).is_empty())
        .collect();
    Page::ok(frame(
        ctx,
        "Event history",
        html! {
            h1 { "Event history" }
            (filters(&f))
            table id="events" {
                thead { tr { th { "Event time" } th { "Event name" } th { "User" } th { "Source" } th { "User agent" } th { "Error" } } }
                tbody { @for r in &rows { (row(r)) } }
            }
            @if !next.is_empty() {
                p { a.button id="older-events" href=(f.older(next)) { "Older events" } }
            }
        },
    ))
}

fn filters(f: &Filter) -> Markup {
    html! {
        form method="get" action="/console/events" id="event-filter" {
            select name="key" id="filter-key" {
                @for k in KEYS { option value=(k) selected[*k == f.key] { (k) } }
            }
            " "
            input type="text" name="value" id="filter-value" value=(f.value);
            " "
            label.inline { "From (UTC) " input type="datetime-local" name="from" id="filter-from" value=(f.from); }
            " "
            label.inline { "To " input type="datetime-local" name="to" id="filter-to" value=(f.to); }
            " "
            label.inline { input type="checkbox" name="errors" value="1" id="errors-only" checked[f.errors_only]; " Errors only" }
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
