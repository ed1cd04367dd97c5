//! Advanced event selectors (PutEventSelectors' `AdvancedEventSelectors`):
//! each selector is a list of field conditions on the CloudTrail record,
//! all of which must hold; an event goes to the trail when one selector
//! matches. Within a condition, values of the including operators
//! (Equals, StartsWith, EndsWith) are alternatives and each excluding one
//! (NotEquals, NotStartsWith, NotEndsWith) must hold.
//!
//! Validation follows AWS's rules for trails: `eventCategory` is required
//! and Equals-only, `readOnly` and `resources.type` are Equals-only,
//! management selectors take only `readOnly` and `eventSource`, data
//! selectors need one `resources.type`, 500 values at most in all.

use serde_json::Value;

use crate::error::{Result, ServiceError, TrailError};

/// Fields a trail's advanced selectors may name.
const FIELDS: &[&str] = &[
    "eventCategory",
    "readOnly",
    "eventSource",
    "eventName",
    "eventType",
    "errorCode",
    "resources.type",
    "resources.ARN",
    "userIdentity.arn",
    "sessionCredentialFromConsole",
    "vpcEndpointId",
];
/// The including and excluding operators, as the API names them.
const POSITIVE: &[&str] = &["Equals", "StartsWith", "EndsWith"];
const NEGATIVE: &[&str] = &["NotEquals", "NotStartsWith", "NotEndsWith"];
/// AWS's limit for a trail: values in all conditions of all selectors.
const MAX_VALUES: usize = 500;
const CATEGORIES: &[&str] = &["Management", "Data", "NetworkActivity"];

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::Trail(TrailError::InvalidEventSelectors, m.into())
}

/// The string values of one operator of a field selector.
fn values<'a>(fs: &'a Value, op: &str) -> Vec<&'a str> {
    fs.get(op)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Check a list of advanced selectors against AWS's rules for trails.
pub fn validate(v: &Value) -> Result<()> {
    let sels = v
        .as_array()
        .ok_or_else(|| bad("AdvancedEventSelectors must be a list."))?;
    if sels.is_empty() {
        return Err(bad(
            "You must specify at least one advanced event selector.",
        ));
    }
    let mut total = 0;
    for s in sels {
        total += validate_selector(s)?;
    }
    if total > MAX_VALUES {
        return Err(bad(format!(
            "The number of values across all advanced event selectors exceeds the limit of {MAX_VALUES}."
        )));
    }
    Ok(())
}

/// One selector; returns how many values it holds.
fn validate_selector(s: &Value) -> Result<usize> {
    if s.get("Name")
        .is_some_and(|n| !n.is_null() && n.as_str().is_none_or(|n| n.len() > 1000))
    {
        return Err(bad("Name must be a string of at most 1000 characters."));
    }
    let fields = s
        .get("FieldSelectors")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("Each advanced event selector must contain FieldSelectors."))?;
    let mut seen: Vec<&str> = Vec::new();
    let mut total = 0;
    for fs in fields {
        let field = fs.get("Field").and_then(Value::as_str).unwrap_or("");
        if !FIELDS.contains(&field) {
            return Err(bad(format!("Invalid field: {field}.")));
        }
        if seen.contains(&field) {
            return Err(bad(format!(
                "Field {field} is specified more than once in an advanced event selector."
            )));
        }
        seen.push(field);
        total += validate_field(fs, field)?;
    }
    let category = fields
        .iter()
        .find(|f| f.get("Field").and_then(Value::as_str) == Some("eventCategory"))
        .map(|f| values(f, "Equals"))
        .ok_or_else(|| {
            bad("The eventCategory field is required in each advanced event selector.")
        })?;
    if category.len() != 1 {
        return Err(bad("eventCategory must have exactly one value."));
    }
    let has_type = seen.contains(&"resources.type");
    match category.first().copied() {
        Some("Management") => {
            if let Some(f) = seen
                .iter()
                .find(|f| !matches!(**f, "eventCategory" | "readOnly" | "eventSource"))
            {
                return Err(bad(format!(
                    "Field {f} is not supported for management events."
                )));
            }
        }
        Some("Data") if !has_type => {
            return Err(bad(
                "The resources.type field is required for data event selectors.",
            ));
        }
        _ => {}
    }
    Ok(total)
}

/// One field selector: at least one operator, the operators its field
/// allows, and valid values.
fn validate_field(fs: &Value, field: &str) -> Result<usize> {
    let mut total = 0;
    for op in POSITIVE.iter().chain(NEGATIVE) {
        let Some(v) = fs.get(*op).filter(|v| !v.is_null()) else {
            continue;
        };
        let list = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            bad(format!(
                "Operator {op} for field {field} must have at least one value."
            ))
        })?;
        if list
            .iter()
            .any(|x| x.as_str().is_none_or(|s| s.is_empty() || s.len() > 2048))
        {
            return Err(bad(format!(
                "Invalid value for operator {op} of field {field}."
            )));
        }
        let equals_only = matches!(field, "eventCategory" | "readOnly" | "resources.type");
        if equals_only && *op != "Equals" {
            return Err(bad(format!(
                "Field {field} only supports the Equals operator."
            )));
        }
        total += list.len();
    }
    if total == 0 {
        return Err(bad(format!(
            "Field {field} must have an operator with at least one value."
        )));
    }
    let eq = values(fs, "Equals");
    match field {
        "eventCategory" => {
            if let Some(c) = eq.iter().find(|c| !CATEGORIES.contains(c)) {
                return Err(bad(format!("Invalid value {c} for field eventCategory.")));
            }
        }
        "readOnly" if eq.len() != 1 || eq.iter().any(|v| !matches!(*v, "true" | "false")) => {
            return Err(bad("readOnly must be Equals true or false."));
        }
        "resources.type" if eq.len() != 1 || eq.iter().any(|t| !resource_type_ok(t)) => {
            return Err(bad(
                "resources.type must be Equals one resource type such as AWS::S3::Object.",
            ));
        }
        _ => {}
    }
    Ok(total)
}

/// `AWS::Service::Type`.
fn resource_type_ok(t: &str) -> bool {
    let parts: Vec<&str> = t.split("::").collect();
    parts.len() == 3
        && parts.first() == Some(&"AWS")
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The values of a record field a condition is tested against
/// (`resources.*`: one per resource; absent: none).
fn event_values(event: &Value, field: &str) -> Vec<String> {
    let resources = |key: &str| -> Vec<String> {
        event
            .get("resources")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r.get(key).and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let scalar = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Bool(b)) => vec![b.to_string()],
            _ => Vec::new(),
        }
    };
    match field {
        "resources.type" => resources("type"),
        "resources.ARN" => resources("ARN"),
        "userIdentity.arn" => scalar(event.get("userIdentity").and_then(|u| u.get("arn"))),
        "sessionCredentialFromConsole" => scalar(event.get("sessionCredentialFromConsole")),
        "readOnly" => scalar(event.get("readOnly").or(Some(&Value::Bool(false)))),
        other => scalar(event.get(other)),
    }
}

fn op_matches(op: &str, have: &str, want: &str) -> bool {
    match op {
        "Equals" | "NotEquals" => have == want,
        "StartsWith" | "NotStartsWith" => have.starts_with(want),
        _ => have.ends_with(want),
    }
}

/// Whether one field condition holds for an event.
fn field_matches(fs: &Value, event: &Value) -> bool {
    let field = fs.get("Field").and_then(Value::as_str).unwrap_or("");
    let have = event_values(event, field);
    let hit = |op: &str| {
        let want = values(fs, op);
        have.iter()
            .any(|h| want.iter().any(|w| op_matches(op, h, w)))
    };
    let positives: Vec<&&str> = POSITIVE
        .iter()
        .filter(|op| fs.get(**op).is_some_and(|v| !v.is_null()))
        .collect();
    let included = positives.is_empty() || positives.iter().any(|op| hit(op));
    let excluded = NEGATIVE.iter().any(|op| hit(op));
    included && !excluded
}

/// Whether any of the advanced selectors takes the event.
pub fn matches(selectors: &Value, event: &Value) -> bool {
    selectors.as_array().is_some_and(|sels| {
        sels.iter().any(|s| {
            s.get("FieldSelectors")
                .and_then(Value::as_array)
                .is_some_and(|fs| fs.iter().all(|f| field_matches(f, event)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(key: &str, bucket: &str, ro: bool) -> Value {
        json!({"eventCategory": "Data", "eventSource": "s3.amazonaws.com",
               "eventName": if ro { "GetObject" } else { "PutObject" }, "readOnly": ro,
               "resources": [{"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/{key}")}]})
    }

    #[test]
    fn data_selector_with_prefix_and_exclusion() {
        let sels = json!([{"Name": "writes to logs/", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "readOnly", "Equals": ["false"]},
            {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::b/logs/"], "NotEndsWith": [".tmp"]},
        ]}]);
        assert!(validate(&sels).is_ok());
        assert!(matches(&sels, &put("logs/a.txt", "b", false)));
        assert!(!matches(&sels, &put("logs/a.tmp", "b", false)));
        assert!(!matches(&sels, &put("logs/a.txt", "b", true)));
        assert!(!matches(&sels, &put("other/a.txt", "b", false)));
    }

    #[test]
    fn management_selector_excluding_a_source() {
        let sels = json!([{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]},
            {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]},
        ]}]);
        assert!(validate(&sels).is_ok());
        let iam = json!({"eventCategory": "Management", "eventSource": "iam.amazonaws.com"});
        let kms = json!({"eventCategory": "Management", "eventSource": "kms.amazonaws.com"});
        assert!(matches(&sels, &iam));
        assert!(!matches(&sels, &kms));
        assert!(!matches(&sels, &put("k", "b", false)));
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for bad in [
            json!([]),
            json!([{"FieldSelectors": []}]),
            json!([{"FieldSelectors": [{"Field": "readOnly", "Equals": ["true"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory", "StartsWith": ["Man"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Other"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]},
                                       {"Field": "eventName", "Equals": ["CreateUser"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]},
                                       {"Field": "readOnly", "Equals": ["maybe"]}]}]),
            json!([{"FieldSelectors": [{"Field": "nope", "Equals": ["x"]}]}]),
            json!([{"FieldSelectors": [{"Field": "eventCategory"}]}]),
        ] {
            assert!(validate(&bad).is_err(), "{bad}");
        }
    }
}
