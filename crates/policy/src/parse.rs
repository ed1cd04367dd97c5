//! Parsing, validation and compilation of policy documents.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::condition::Condition;
use crate::glob::{ArnPattern, Glob};
use crate::span::{Span, statement_spans};
use crate::template::Template;
use crate::{PolicyError, PolicyKind, policy_size};

/// Statement effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// `"Effect": "Allow"`
    Allow,
    /// `"Effect": "Deny"`
    Deny,
}

impl Effect {
    /// `"Allow"` / `"Deny"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// A parsed, validated and compiled policy document. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    version: String,
    id: Option<String>,
    kind: PolicyKind,
    size: usize,
    statements: Vec<Statement>,
    index: Index,
    /// Where each statement is in the text (empty if unknown).
    spans: Vec<Span>,
    /// Condition keys and variables the document references, as written.
    context_keys: Vec<String>,
}

/// Statements indexed by the (lower-case) service prefix of their actions.
#[derive(Debug, Default)]
struct Index {
    /// sorted by service; each list is sorted and already includes `always`.
    by_service: Vec<(Box<str>, Box<[u32]>)>,
    /// statements whose actions can match any service (`*`, `*:Get*`, NotAction).
    always: Box<[u32]>,
}

/// A compiled statement.
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    pub(crate) not_action: bool,
    /// lower-cased action patterns
    pub(crate) actions: Vec<Glob>,
    /// `None`: no Resource element (trust / SCP), matches everything.
    pub(crate) resource: Option<ResourceSpec>,
    pub(crate) principal: Option<PrincipalSpec>,
    pub(crate) conditions: Vec<Condition>,
}

#[derive(Clone, Debug)]
pub(crate) struct ResourceSpec {
    pub(crate) not: bool,
    pub(crate) items: Vec<ResItem>,
}

#[derive(Clone, Debug)]
pub(crate) enum ResItem {
    Pat(ArnPattern),
    Tpl(Template),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PrincipalSpec {
    pub(crate) not: bool,
    /// `"*"` or `{"AWS": "*"}`
    pub(crate) any: bool,
    pub(crate) aws_arns: Vec<String>,
    pub(crate) accounts: Vec<String>,
    pub(crate) services: Vec<String>,
    pub(crate) federated: Vec<String>,
    pub(crate) canonical: Vec<String>,
}

const VERSION_2012: &str = "2012-10-17";
const VERSION_2008: &str = "2008-10-17";

fn syntax() -> PolicyError {
    PolicyError::malformed("Syntax errors in policy.")
}

fn at(i: usize, msg: impl std::fmt::Display) -> PolicyError {
    PolicyError::malformed(format!("{msg} (Statement[{i}])"))
}

impl Policy {
    /// Parse and validate a policy document for the given kind, and compile it.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        let size = policy_size(json);
        if size > kind.size_quota() {
            return Err(PolicyError::limit(kind.size_quota()));
        }
        Self::parse_sized(json, kind, size)
    }

    /// Like [`Policy::parse`] but without the size quota: for AWS-managed policies (which
    /// exceed the customer quota) and documents stored before a quota change. Every other
    /// rule is still enforced.
    pub fn parse_unchecked_size(json: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        Self::parse_sized(json, kind, policy_size(json))
    }

    fn parse_sized(json: &str, kind: PolicyKind, size: usize) -> Result<Policy, PolicyError> {
        if kind != PolicyKind::Resource
            && json
                .chars()
                .any(|c| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FF}'))
        {
            return Err(PolicyError::malformed(
                "The policy contains characters that are not allowed. Allowed characters: [\\u0009\\u000A\\u000D\\u0020-\\u00FF].",
            ));
        }
        let doc: Value = serde_json::from_str(json)
            .map_err(|_| PolicyError::malformed("This policy contains invalid Json"))?;
        let mut policy = Self::from_value(&doc, kind, size)?;
        let spans = statement_spans(json);
        if spans.len() == policy.statement_count()
            && let Some(inner) = Arc::get_mut(&mut policy.inner)
        {
            inner.spans = spans;
        }
        Ok(policy)
    }

    fn from_value(doc: &Value, kind: PolicyKind, size: usize) -> Result<Policy, PolicyError> {
        let obj = doc.as_object().ok_or_else(syntax)?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError::malformed(format!(
                    "Syntax errors in policy. Unknown field {k}."
                )));
            }
        }
        let version = match obj.get("Version") {
            None => VERSION_2008,
            Some(Value::String(v)) if v == VERSION_2012 => VERSION_2012,
            Some(Value::String(v)) if v == VERSION_2008 => VERSION_2008,
            Some(_) => return Err(PolicyError::malformed("The policy failed legacy parsing")),
        };
        let id = match obj.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax()),
        };
        let stmts: Vec<&Map<String, Value>> = match obj.get("Statement") {
            Some(Value::Object(o)) => vec![o],
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_object().ok_or_else(syntax))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(syntax()),
            None => {
                return Err(PolicyError::malformed(
                    "Syntax errors in policy. Missing required field Statement.",
                ));
            }
        };
        let variables = version == VERSION_2012;
        let mut statements = Vec::with_capacity(stmts.len());
        let mut sids = HashSet::new();
        let mut context_keys = Vec::new();
        for (i, s) in stmts.into_iter().enumerate() {
            let st = compile_statement(i, s, kind, variables)?;
            referenced_keys(s, variables, &mut context_keys);
            if let Some(sid) = &st.sid
                && !sid.is_empty()
                && !sids.insert(sid.clone())
            {
                return Err(at(
                    i,
                    "Statement IDs (SID) in a single policy must be unique.",
                ));
            }
            statements.push(st);
        }
        let index = build_index(&statements);
        Ok(Policy {
            inner: Arc::new(Inner {
                version: version.to_string(),
                id,
                kind,
                size,
                statements,
                index,
                spans: Vec::new(),
                context_keys: dedup_ignore_case(context_keys),
            }),
        })
    }

    /// The effective policy language version (`2008-10-17` when absent).
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The `Id` element, if any.
    pub fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }

    /// The kind the policy was validated for.
    pub fn kind(&self) -> PolicyKind {
        self.inner.kind
    }

    /// Size counted toward quotas (non-whitespace characters).
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Number of statements.
    pub fn statement_count(&self) -> usize {
        self.inner.statements.len()
    }

    /// The statement ids, in document order.
    pub fn sids(&self) -> impl Iterator<Item = Option<&str>> {
        self.inner.statements.iter().map(|s| s.sid.as_deref())
    }

    /// Where statement `index` is in the text it was parsed from.
    pub fn span(&self, index: usize) -> Option<Span> {
        self.inner.spans.get(index).copied()
    }

    /// The condition keys and policy variables the document references, as
    /// written, in document order, each once (case-insensitively).
    pub fn context_keys(&self) -> &[String] {
        &self.inner.context_keys
    }

    pub(crate) fn statements(&self) -> &[Statement] {
        &self.inner.statements
    }

    /// Indices of statements that can match an action of `service_lc`.
    pub(crate) fn candidates(&self, service_lc: &str) -> &[u32] {
        let idx = &self.inner.index;
        match idx
            .by_service
            .binary_search_by(|(s, _)| (**s).cmp(service_lc))
        {
            Ok(i) => &idx.by_service[i].1,
            Err(_) => &idx.always,
        }
    }
}

/// Condition keys of a statement, and the variables in its Resource /
/// NotResource and condition values (only where variables are substituted).
fn referenced_keys(s: &Map<String, Value>, variables: bool, out: &mut Vec<String>) {
    let vars_of = |v: &Value, out: &mut Vec<String>| {
        let texts: Vec<&str> = match v {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for t in texts {
            if variables && let Some(tpl) = Template::parse(t) {
                out.extend(tpl.variable_names().map(str::to_string));
            }
        }
    };
    for field in ["Resource", "NotResource"] {
        if let Some(v) = s.get(field) {
            vars_of(v, out);
        }
    }
    if let Some(Value::Object(ops)) = s.get("Condition") {
        for keys in ops.values() {
            if let Value::Object(keys) = keys {
                for (key, vals) in keys {
                    out.push(key.clone());
                    vars_of(vals, out);
                }
            }
        }
    }
}

fn dedup_ignore_case(keys: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter(|k| seen.insert(k.to_lowercase()))
        .collect()
}

fn build_index(statements: &[Statement]) -> Index {
    let mut always = Vec::new();
    let mut by: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for (i, st) in statements.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        let mut services = Vec::new();
        let mut any = st.not_action;
        for g in &st.actions {
            match g
                .literal_prefix()
                .and_then(|p| p.split_once(':').map(|(s, _)| s.to_string()))
            {
                Some(svc) => services.push(svc),
                None => any = true,
            }
        }
        if any {
            always.push(i);
        } else {
            for s in services {
                let v = by.entry(s).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
    }
    let by_service = by
        .into_iter()
        .map(|(s, mut v)| {
            v.extend_from_slice(&always);
            v.sort_unstable();
            v.dedup();
            (s.into_boxed_str(), v.into_boxed_slice())
        })
        .collect();
    Index {
        by_service,
        always: always.into_boxed_slice(),
    }
}

/// A string or an array of strings.
fn strings(v: &Value, i: usize, field: &str) -> Result<Vec<String>, PolicyError> {
    let bad = || {
        at(
            i,
            format!("Syntax errors in policy. {field} must be a string or an array of strings."),
        )
    };
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

fn is_iam_kind(kind: PolicyKind) -> bool {
    kind != PolicyKind::Resource
}

fn compile_statement(
    i: usize,
    s: &Map<String, Value>,
    kind: PolicyKind,
    variables: bool,
) -> Result<Statement, PolicyError> {
    for k in s.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Principal"
                | "NotPrincipal"
                | "Condition"
        ) {
            return Err(at(
                i,
                format!("Syntax errors in policy. Unknown field {k}."),
            ));
        }
    }
    // Sid
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(v)) => {
            if is_iam_kind(kind) && !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(at(
                    i,
                    "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
                ));
            }
            Some(v.clone())
        }
        Some(_) => return Err(at(i, "Syntax errors in policy. Sid must be a string.")),
    };
    // Effect
    let effect = match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(Value::String(e)) => return Err(at(i, format!("Invalid effect: {e}"))),
        Some(_) => return Err(at(i, "Invalid effect.")),
        None => return Err(at(i, "Missing required field Effect.")),
    };
    // Action / NotAction
    let (not_action, raw_actions) = match (s.get("Action"), s.get("NotAction")) {
        (Some(_), Some(_)) => {
            return Err(at(
                i,
                "Policy statement must contain either Action or NotAction, not both.",
            ));
        }
        (Some(a), None) => (false, strings(a, i, "Action")?),
        (None, Some(a)) => (true, strings(a, i, "NotAction")?),
        (None, None) => return Err(at(i, "Policy statement must contain actions.")),
    };
    if raw_actions.is_empty() {
        return Err(at(i, "Policy statement must contain actions."));
    }
    let mut actions = Vec::with_capacity(raw_actions.len());
    for a in &raw_actions {
        validate_action(i, a)?;
        if kind == PolicyKind::Trust {
            let sts = a
                .split_once(':')
                .is_some_and(|(p, _)| p.eq_ignore_ascii_case("sts"));
            if !sts || not_action {
                return Err(at(
                    i,
                    "AssumeRole policy may only specify STS AssumeRole actions.",
                ));
            }
        }
        actions.push(Glob::new(&a.to_lowercase()));
    }
    // Resource / NotResource
    let resource = match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => {
            return Err(at(
                i,
                "Policy statement must contain either Resource or NotResource, not both.",
            ));
        }
        (Some(r), None) => Some((false, strings(r, i, "Resource")?)),
        (None, Some(r)) => Some((true, strings(r, i, "NotResource")?)),
        (None, None) => None,
    };
    let resource = match resource {
        Some((not, raw)) => {
            if raw.is_empty() {
                return Err(at(i, "Policy statement must contain resources."));
            }
            let mut items = Vec::with_capacity(raw.len());
            for r in &raw {
                validate_resource(i, r)?;
                items.push(compile_resource(r, variables));
            }
            Some(ResourceSpec { not, items })
        }
        None => {
            if matches!(kind, PolicyKind::Trust | PolicyKind::Scp) {
                None
            } else {
                return Err(at(i, "Policy statement must contain resources."));
            }
        }
    };
    // Principal / NotPrincipal
    let principal = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(at(
                i,
                "Policy statement must contain either Principal or NotPrincipal, not both.",
            ));
        }
        (Some(p), None) => Some(parse_principal(i, p, false)?),
        (None, Some(p)) => Some(parse_principal(i, p, true)?),
        (None, None) => None,
    };
    match kind {
        PolicyKind::Identity | PolicyKind::Boundary | PolicyKind::Session | PolicyKind::Scp => {
            if principal.is_some() {
                return Err(at(i, "Policy document should not specify a principal."));
            }
        }
        PolicyKind::Resource | PolicyKind::Trust => {
            let Some(p) = &principal else {
                return Err(at(i, "Missing required field Principal."));
            };
            if kind == PolicyKind::Trust && p.not {
                return Err(at(i, "Trust policies cannot contain NotPrincipal."));
            }
        }
    }
    // Condition
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(ops)) => {
            let mut out = Vec::new();
            for (op, keys) in ops {
                let keys = keys.as_object().ok_or_else(|| {
                    at(
                        i,
                        format!("Syntax errors in policy. Condition {op} must be an object."),
                    )
                })?;
                for (key, vals) in keys {
                    let vals = condition_values(vals).ok_or_else(|| {
                        at(
                            i,
                            format!(
                                "Syntax errors in policy. Invalid value for condition key {key}."
                            ),
                        )
                    })?;
                    out.push(Condition::compile(op, key, &vals, variables).map_err(|e| at(i, e))?);
                }
            }
            out
        }
        Some(_) => {
            return Err(at(
                i,
                "Syntax errors in policy. Condition must be an object.",
            ));
        }
    };
    Ok(Statement {
        sid,
        effect,
        not_action,
        actions,
        resource,
        principal,
        conditions,
    })
}

fn condition_values(v: &Value) -> Option<Vec<String>> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    match v {
        Value::Array(a) => a.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

fn validate_action(i: usize, a: &str) -> Result<(), PolicyError> {
    if a == "*" {
        return Ok(());
    }
    let Some((prefix, name)) = a.split_once(':') else {
        return Err(at(
            i,
            format!(
                "Actions/Conditions must be prefixed by a vendor, e.g., iam, sdb, ec2, etc. Invalid action: {a}"
            ),
        ));
    };
    let ok_prefix = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'));
    let ok_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '?' | '.'));
    if !ok_prefix || !ok_name {
        return Err(at(i, format!("Invalid action: {a}")));
    }
    Ok(())
}

/// Replace `${…}` with a placeholder so that variable contents don't affect validation.
fn without_vars(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    let mut rest = r;
    while let Some(p) = rest.find("${") {
        let after = &rest[p + 2..];
        let Some(e) = after.find('}') else { break };
        out.push_str(&rest[..p]);
        out.push('x');
        rest = &after[e + 1..];
    }
    out.push_str(rest);
    out
}

fn validate_resource(i: usize, r: &str) -> Result<(), PolicyError> {
    if r == "*" {
        return Ok(());
    }
    let plain = without_vars(r);
    let bad = || at(i, format!("Resource {r} must be in ARN format or \"*\"."));
    if !plain.starts_with("arn:") {
        return Err(bad());
    }
    let parts = crate::glob::arn_parts(&plain).ok_or_else(bad)?;
    let service = parts[2];
    if parts[1].is_empty() || service.is_empty() || service.contains(['*', '?']) {
        return Err(at(
            i,
            format!("Resource vendor must be fully qualified and cannot contain regexes: {r}"),
        ));
    }
    if service == "iam" && !parts[3].is_empty() {
        return Err(at(
            i,
            format!("IAM resource {r} cannot contain region information."),
        ));
    }
    Ok(())
}

fn compile_resource(r: &str, variables: bool) -> ResItem {
    if variables && let Some(t) = Template::parse(r) {
        if t.has_vars() {
            return ResItem::Tpl(t);
        }
        struct NoVars;
        impl crate::template::Vars for NoVars {
            fn var(&self, _: &str) -> Option<&str> {
                None
            }
        }
        if let Some(toks) = t.resolve_tokens(&NoVars) {
            return ResItem::Pat(ArnPattern::from_tokens(&toks));
        }
    }
    ResItem::Pat(ArnPattern::new(r))
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_principal(i: usize, v: &Value, not: bool) -> Result<PrincipalSpec, PolicyError> {
    let mut spec = PrincipalSpec {
        not,
        ..Default::default()
    };
    let invalid = |what: &str| at(i, format!("Invalid principal in policy: {what}"));
    match v {
        Value::String(s) if s == "*" => {
            spec.any = true;
            return Ok(spec);
        }
        Value::Object(o) if !o.is_empty() => {
            for (k, vals) in o {
                let vals = strings(vals, i, "Principal")?;
                if vals.is_empty() {
                    return Err(invalid(&format!("\"{k}\":[]")));
                }
                for val in vals {
                    let shown = format!("\"{k}\":\"{val}\"");
                    match k.as_str() {
                        "AWS" => {
                            if val == "*" {
                                spec.any = true;
                            } else if is_account_id(&val) {
                                spec.accounts.push(val);
                            } else if let Some(p) = crate::glob::arn_parts(&val) {
                                let ok = p[0] == "arn"
                                    && !p[1].is_empty()
                                    && matches!(p[2], "iam" | "sts")
                                    && p[3].is_empty()
                                    && !p[4].is_empty()
                                    && p[4].bytes().all(|b| b.is_ascii_digit())
                                    && !p[5].is_empty()
                                    && !val.contains(['*', '?']);
                                if !ok {
                                    return Err(invalid(&shown));
                                }
                                if p[2] == "iam" && p[5] == "root" {
                                    spec.accounts.push(p[4].to_string());
                                } else {
                                    spec.aws_arns.push(val);
                                }
                            } else {
                                return Err(invalid(&shown));
                            }
                        }
                        "Service" => {
                            if val.is_empty() || val.contains(['*', '?', ' ']) {
                                return Err(invalid(&shown));
                            }
                            spec.services.push(val);
                        }
                        "Federated" => {
                            if val.is_empty() {
                                return Err(invalid(&shown));
                            }
                            spec.federated.push(val);
                        }
                        "CanonicalUser" => {
                            if val.is_empty() {
                                return Err(invalid(&shown));
                            }
                            spec.canonical.push(val);
                        }
                        _ => return Err(invalid(&shown)),
                    }
                }
            }
        }
        _ => return Err(invalid(&v.to_string())),
    }
    Ok(spec)
}
