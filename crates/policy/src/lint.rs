//! Policy validation as IAM Access Analyzer's `ValidatePolicy` does it: a list
//! of findings (ERROR, SECURITY_WARNING, WARNING, SUGGESTION), each with AWS's
//! issue code, a learn-more link and the locations (path and span) it is about.
//! Pure and total: any input yields findings, never a panic.

use serde::{Deserialize, Serialize};

use crate::catalogue::catalogue;
use crate::condition::{Base, IpNet, SetOp, parse_operator};
use crate::glob::Glob;
use crate::span::{LineIndex, Member, Node, TextPos, Val, parse_tree};

/// The impact of a finding, as Access Analyzer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingType {
    /// Part of the policy does not work.
    Error,
    /// The policy allows access AWS considers overly permissive.
    SecurityWarning,
    /// Not a best practice.
    Warning,
    /// A stylistic improvement that does not change access.
    Suggestion,
}

impl FindingType {
    /// Wire name (`SECURITY_WARNING`).
    pub fn as_str(&self) -> &'static str {
        match self {
            FindingType::Error => "ERROR",
            FindingType::SecurityWarning => "SECURITY_WARNING",
            FindingType::Warning => "WARNING",
            FindingType::Suggestion => "SUGGESTION",
        }
    }

    /// The anchor word of the check reference page.
    fn anchor(&self) -> &'static str {
        match self {
            FindingType::Error => "error",
            FindingType::SecurityWarning => "security-warning",
            FindingType::Warning => "general-warning",
            FindingType::Suggestion => "suggestion",
        }
    }

    /// Whether a finding of this type fails a lint run.
    pub fn is_blocking(&self) -> bool {
        matches!(self, FindingType::Error | FindingType::SecurityWarning)
    }
}

/// `policyType` of ValidatePolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LintPolicyType {
    /// `IDENTITY_POLICY`
    Identity,
    /// `RESOURCE_POLICY`
    Resource,
    /// `SERVICE_CONTROL_POLICY`
    ServiceControl,
    /// `RESOURCE_CONTROL_POLICY`
    ResourceControl,
}

impl LintPolicyType {
    /// Parse the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "IDENTITY_POLICY" => LintPolicyType::Identity,
            "RESOURCE_POLICY" => LintPolicyType::Resource,
            "SERVICE_CONTROL_POLICY" => LintPolicyType::ServiceControl,
            "RESOURCE_CONTROL_POLICY" => LintPolicyType::ResourceControl,
            _ => return None,
        })
    }

    fn is_resource(&self) -> bool {
        matches!(
            self,
            LintPolicyType::Resource | LintPolicyType::ResourceControl
        )
    }
}

/// One step of a location path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathElement {
    /// An array index.
    Index(usize),
    /// An object key itself.
    Key(String),
    /// The value of an object key.
    Value(String),
    /// Part of a string.
    Substring {
        /// 0-based start in the string.
        start: usize,
        /// Length.
        length: usize,
    },
}

/// Start and end (exclusive) of a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSpan {
    /// First character.
    pub start: TextPos,
    /// Just past the last character.
    pub end: TextPos,
}

/// Where in the document a finding is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// From the root to the element.
    pub path: Vec<PathElement>,
    /// The element's text.
    pub span: TextSpan,
}

/// One ValidatePolicy finding, serialized in AWS's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Impact.
    pub finding_type: FindingType,
    /// AWS's issue code (`INVALID_ACTION`).
    pub issue_code: String,
    /// What is wrong and how to fix it.
    pub finding_details: String,
    /// The check reference entry.
    pub learn_more_link: String,
    /// Where.
    pub locations: Vec<Location>,
}

const REFERENCE: &str =
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html";

/// The check reference link of an issue code.
pub fn learn_more_link(kind: FindingType, code: &str) -> String {
    format!(
        "{REFERENCE}#access-analyzer-reference-policy-checks-{}-{}",
        kind.anchor(),
        code.to_ascii_lowercase().replace('_', "-")
    )
}

/// Validate `doc` as Access Analyzer does for a policy of `policy_type`;
/// `resource_type` is `validatePolicyResourceType` (e.g. `AWS::S3::Bucket`).
pub fn validate(
    doc: &str,
    policy_type: LintPolicyType,
    resource_type: Option<&str>,
) -> Vec<Finding> {
    let mut l = Linter {
        idx: LineIndex::new(doc),
        ty: policy_type,
        trust: resource_type == Some("AWS::IAM::AssumeRolePolicyDocument"),
        out: Vec::new(),
    };
    match parse_tree(doc) {
        Ok(root) => l.policy(&root, doc),
        Err(at) => {
            let p = l.idx.pos(at);
            let details = format!(
                "Fix the JSON syntax error at index {} line {} column {}.",
                p.offset, p.line, p.column
            );
            l.push(
                FindingType::Error,
                "JSON_SYNTAX_ERROR",
                details,
                vec![l.loc(Vec::new(), at, at)],
            );
        }
    }
    l.out
}

/// The statement path prefix: `Statement` and, inside an array, the index.
type Path = Vec<PathElement>;

fn with(path: &[PathElement], more: PathElement) -> Path {
    let mut p = path.to_vec();
    p.push(more);
    p
}

fn value(key: &str) -> PathElement {
    PathElement::Value(key.to_string())
}

/// Most items of one element compared pairwise for redundancy.
const MAX_REDUNDANCY_ITEMS: usize = 1000;

const TOP_ELEMENTS: [&str; 3] = ["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

struct Linter<'a> {
    idx: LineIndex<'a>,
    ty: LintPolicyType,
    trust: bool,
    out: Vec<Finding>,
}

/// A string (or each string of an array) of an element, with its path and node.
struct Item<'n> {
    text: &'n str,
    node: &'n Node,
    path: Path,
}

impl Linter<'_> {
    fn loc(&self, path: Path, start: usize, end: usize) -> Location {
        Location {
            path,
            span: TextSpan {
                start: self.idx.pos(start),
                end: self.idx.pos(end),
            },
        }
    }

    fn at(&self, path: Path, node: &Node) -> Location {
        self.loc(path, node.start, node.end)
    }

    fn key_at(&self, path: &[PathElement], m: &Member) -> Location {
        self.loc(
            with(path, PathElement::Key(m.key.clone())),
            m.key_start,
            m.key_end,
        )
    }

    fn push(&mut self, kind: FindingType, code: &str, details: String, locations: Vec<Location>) {
        self.out.push(Finding {
            finding_type: kind,
            issue_code: code.to_string(),
            finding_details: details,
            learn_more_link: learn_more_link(kind, code),
            locations,
        });
    }

    fn mismatch(&mut self, path: Path, node: &Node, expected: &str) {
        let loc = self.at(path, node);
        self.push(
            FindingType::Error,
            "DATA_TYPE_MISMATCH",
            format!("The text does not match the expected JSON data type {expected}."),
            vec![loc],
        );
    }

    fn policy(&mut self, root: &Node, doc: &str) {
        let Val::Obj(members) = &root.v else {
            self.mismatch(Vec::new(), root, "Object");
            return;
        };
        for m in members {
            if !TOP_ELEMENTS.contains(&m.key.as_str()) {
                let loc = self.key_at(&[], m);
                self.push(
                    FindingType::Error,
                    "INVALID_POLICY_ELEMENT",
                    format!("The policy element {} is not valid.", m.key),
                    vec![loc],
                );
            }
        }
        self.version(root);
        if self.ty == LintPolicyType::Identity && crate::policy_size(doc) > 6144 {
            let loc = self.at(Vec::new(), root);
            self.push(
                FindingType::Warning,
                "POLICY_SIZE_EXCEEDS_IDENTITY_POLICY_QUOTA",
                "The 6144 characters in the policy, excluding whitespace, exceed the character maximum for inline and managed policies. We recommend that you use multiple granular policies.".into(),
                vec![loc],
            );
        }
        let Some(st) = root.get("Statement") else {
            let loc = self.at(Vec::new(), root);
            self.push(
                FindingType::Error,
                "MISSING_STATEMENT",
                "Add a statement to the policy.".into(),
                vec![loc],
            );
            return;
        };
        let base = vec![value("Statement")];
        let statements: Vec<(Path, &Node)> = match &st.value.v {
            Val::Arr(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (with(&base, PathElement::Index(i)), n))
                .collect(),
            Val::Obj(_) => vec![(base, &st.value)],
            _ => {
                self.mismatch(base, &st.value, "Array");
                return;
            }
        };
        for (path, node) in &statements {
            self.statement(path, node);
        }
        self.sids(&statements);
        self.redundant_statements(&statements);
    }

    fn version(&mut self, root: &Node) {
        let Some(v) = root.get("Version") else {
            let loc = self.at(Vec::new(), root);
            self.push(
                FindingType::Warning,
                "MISSING_VERSION",
                "We recommend that you specify the Version element to help you with debugging permission issues.".into(),
                vec![loc],
            );
            return;
        };
        let path = vec![value("Version")];
        match v.value.as_str() {
            None => self.mismatch(path, &v.value, "String"),
            Some("2012-10-17" | "2008-10-17") => {}
            Some(other) => {
                let loc = self.at(path, &v.value);
                self.push(
                    FindingType::Error,
                    "INVALID_VERSION",
                    format!("The version {other} is not valid. Use one of the following versions: 2012-10-17, 2008-10-17."),
                    vec![loc],
                );
            }
        }
    }

    fn statement(&mut self, path: &[PathElement], st: &Node) {
        let Val::Obj(members) = &st.v else {
            self.mismatch(path.to_vec(), st, "Object");
            return;
        };
        for m in members {
            if !STATEMENT_ELEMENTS.contains(&m.key.as_str()) {
                let loc = self.key_at(path, m);
                self.push(
                    FindingType::Error,
                    "INVALID_POLICY_ELEMENT",
                    format!("The policy element {} is not valid.", m.key),
                    vec![loc],
                );
            }
        }
        let allow = self.effect(path, st);
        let actions = self.actions(path, st);
        let resources = self.resources(path, st);
        self.principal(path, st, allow);
        if let Some(c) = st.get("Condition") {
            self.conditions(&with(path, value("Condition")), &c.value);
        }
        if allow && self.ty == LintPolicyType::Identity {
            self.pass_role(path, st, &actions, &resources);
        }
    }

    /// Checks Effect; returns whether the statement allows.
    fn effect(&mut self, path: &[PathElement], st: &Node) -> bool {
        let Some(e) = st.get("Effect") else {
            let loc = self.at(path.to_vec(), st);
            self.push(
                FindingType::Error,
                "MISSING_EFFECT",
                "Add an Effect element to this policy statement with a value of Allow or Deny."
                    .into(),
                vec![loc],
            );
            return false;
        };
        let ep = with(path, value("Effect"));
        match e.value.as_str() {
            Some("Allow") => true,
            Some("Deny") => false,
            Some(other) => {
                let loc = self.at(ep, &e.value);
                self.push(
                    FindingType::Error,
                    "INVALID_EFFECT",
                    format!("The effect value {other} is not valid. Use Allow or Deny."),
                    vec![loc],
                );
                false
            }
            None => {
                self.mismatch(ep, &e.value, "String");
                false
            }
        }
    }

    /// The strings of a string-or-array element; reports wrong types and empty arrays.
    fn strings<'n>(
        &mut self,
        path: &[PathElement],
        m: &'n Member,
        empty_code: Option<&str>,
    ) -> Vec<Item<'n>> {
        let ep = with(path, value(&m.key));
        match &m.value.v {
            Val::Str(s) => vec![Item {
                text: s,
                node: &m.value,
                path: ep,
            }],
            Val::Arr(items) => {
                if items.is_empty()
                    && let Some(code) = empty_code
                {
                    let loc = self.at(ep.clone(), &m.value);
                    self.push(
                        FindingType::Suggestion,
                        code,
                        format!(
                            "This statement includes no {0}s and does not affect the policy. Specify {0}s.",
                            m.key.to_ascii_lowercase()
                        ),
                        vec![loc],
                    );
                }
                let mut out = Vec::new();
                for (i, n) in items.iter().enumerate() {
                    let ip = with(&ep, PathElement::Index(i));
                    match &n.v {
                        Val::Str(s) => out.push(Item {
                            text: s,
                            node: n,
                            path: ip,
                        }),
                        _ => self.mismatch(ip, n, "String"),
                    }
                }
                out
            }
            _ => {
                self.mismatch(ep, &m.value, "Array");
                Vec::new()
            }
        }
    }

    /// Action / NotAction; returns the Action strings (not NotAction).
    fn actions<'n>(&mut self, path: &[PathElement], st: &'n Node) -> Vec<Item<'n>> {
        let (a, na) = (st.get("Action"), st.get("NotAction"));
        if a.is_none() && na.is_none() {
            let loc = self.at(path.to_vec(), st);
            self.push(
                FindingType::Error,
                "MISSING_ACTION",
                "Add an Action or NotAction element to the policy statement.".into(),
                vec![loc],
            );
        }
        let mut kept = Vec::new();
        for (m, is_action) in [(a, true), (na, false)] {
            let Some(m) = m else { continue };
            let items = self.strings(path, m, Some("EMPTY_ARRAY_ACTION"));
            for it in &items {
                self.action(it);
            }
            self.redundant(&items, "REDUNDANT_ACTION", "action", true);
            if is_action {
                kept = items;
            }
        }
        kept
    }

    fn action(&mut self, it: &Item) {
        let a = it.text;
        if a == "*" {
            return;
        }
        let Some((svc, name)) = a.split_once(':') else {
            let loc = self.at(it.path.clone(), it.node);
            self.push(
                FindingType::Error,
                "INVALID_ACTION",
                format!("The action {a} does not exist."),
                vec![loc],
            );
            return;
        };
        if svc.contains(['*', '?']) {
            let loc = self.at(it.path.clone(), it.node);
            self.push(
                FindingType::Suggestion,
                "WILDCARD_IN_SERVICE_NAME",
                format!("Avoid using wildcards (*, ?) in the service name {svc} because it might grant unintended access to other AWS services with similar names."),
                vec![loc],
            );
            return;
        }
        let cat = catalogue();
        if !cat.service_exists(svc) {
            let loc = self.at(it.path.clone(), it.node);
            self.push(
                FindingType::Error,
                "INVALID_SERVICE",
                format!("The service {svc} does not exist."),
                vec![loc],
            );
            return;
        }
        let known = if name.contains(['*', '?']) {
            !cat.expand(a).is_empty()
        } else {
            cat.action_exists(a)
        };
        if !known {
            let loc = self.at(it.path.clone(), it.node);
            self.push(
                FindingType::Error,
                "INVALID_ACTION",
                format!("The action {a} does not exist."),
                vec![loc],
            );
        }
    }

    /// Items another item of the same element already covers. The pairwise
    /// check is skipped past [`MAX_REDUNDANCY_ITEMS`] items to bound the work.
    fn redundant(&mut self, items: &[Item], code: &str, what: &str, ci: bool) {
        if items.len() > MAX_REDUNDANCY_ITEMS {
            return;
        }
        let norm = |s: &str| {
            if ci {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        let globs: Vec<(String, Glob)> = items
            .iter()
            .map(|i| (norm(i.text), Glob::new(&norm(i.text))))
            .collect();
        for (j, it) in items.iter().enumerate() {
            let Some((tj, _)) = globs.get(j) else {
                continue;
            };
            let cover = globs
                .iter()
                .enumerate()
                .find(|(i, (ti, gi))| *i != j && if ti == tj { *i < j } else { gi.matches(tj) });
            if let Some((i, _)) = cover {
                let by = items.get(i).map_or("", |x| x.text);
                let loc = self.at(it.path.clone(), it.node);
                self.push(
                    FindingType::Suggestion,
                    code,
                    format!("The {what} {} is redundant because it provides similar permissions to {by}. Remove the redundant {what}.", it.text),
                    vec![loc],
                );
            }
        }
    }

    /// Resource / NotResource; returns the Resource strings and whether NotResource is used.
    fn resources<'n>(&mut self, path: &[PathElement], st: &'n Node) -> (Vec<Item<'n>>, bool) {
        let (r, nr) = (st.get("Resource"), st.get("NotResource"));
        if r.is_none() && nr.is_none() && !self.trust {
            let loc = self.at(path.to_vec(), st);
            self.push(
                FindingType::Error,
                "MISSING_RESOURCE",
                "Add a Resource or NotResource element to the policy statement.".into(),
                vec![loc],
            );
        }
        let mut kept = Vec::new();
        for (m, is_resource) in [(r, true), (nr, false)] {
            let Some(m) = m else { continue };
            let items = self.strings(path, m, Some("EMPTY_ARRAY_RESOURCE"));
            self.redundant(&items, "REDUNDANT_RESOURCE", "resource ARN", false);
            if is_resource {
                kept = items;
            }
        }
        (kept, nr.is_some())
    }

    fn principal(&mut self, path: &[PathElement], st: &Node, allow: bool) {
        let (p, np) = (st.get("Principal"), st.get("NotPrincipal"));
        let wants = self.ty.is_resource() || self.trust;
        if !wants {
            for m in [p, np].into_iter().flatten() {
                let loc = self.key_at(path, m);
                self.push(
                    FindingType::Error,
                    "UNSUPPORTED_PRINCIPAL",
                    format!("Policies with this type do not support the {} element. Remove the {} element.", m.key, m.key),
                    vec![loc],
                );
            }
            return;
        }
        if p.is_none() && np.is_none() {
            let loc = self.at(path.to_vec(), st);
            self.push(
                FindingType::Error,
                "MISSING_PRINCIPAL",
                "Add a Principal element to the policy statement.".into(),
                vec![loc],
            );
        }
        if let Some(m) = np
            && allow
        {
            let loc = self.key_at(path, m);
            self.push(
                FindingType::SecurityWarning,
                "ALLOW_WITH_NOT_PRINCIPAL",
                "Using Allow with NotPrincipal can be overly permissive. We recommend that you use Principal instead.".into(),
                vec![loc],
            );
        }
    }

    fn conditions(&mut self, path: &[PathElement], c: &Node) {
        let Val::Obj(ops) = &c.v else {
            self.mismatch(path.to_vec(), c, "Object");
            return;
        };
        for op in ops {
            let Some((base, _neg, set, if_exists)) = parse_operator(&op.key) else {
                let loc = self.key_at(path, op);
                self.push(
                    FindingType::Error,
                    "INVALID_CONDITION_OPERATOR",
                    format!(
                        "The condition operator {} is not valid. Use a valid condition operator.",
                        op.key
                    ),
                    vec![loc],
                );
                continue;
            };
            if base == Base::Null && if_exists {
                let loc = self.key_at(path, op);
                self.push(
                    FindingType::Error,
                    "NULL_WITH_IF_EXISTS",
                    "The IfExists suffix is not supported for the Null condition operator. Remove the IfExists suffix.".into(),
                    vec![loc],
                );
            }
            let op_path = with(path, value(&op.key));
            let Val::Obj(keys) = &op.value.v else {
                self.mismatch(op_path, &op.value, "Object");
                continue;
            };
            for k in keys {
                self.condition_key(&op_path, k, set);
                self.condition_values(&op_path, &op.key, base, k);
            }
        }
    }

    fn condition_key(&mut self, op_path: &[PathElement], k: &Member, set: SetOp) {
        let cat = catalogue();
        let key = k.key.as_str();
        let Some((prefix, _)) = key.split_once(':') else {
            return;
        };
        let typ = if prefix.eq_ignore_ascii_case("aws") {
            let Some((_, t)) = cat.global_key(key) else {
                let loc = self.key_at(op_path, k);
                self.push(
                    FindingType::Error,
                    "INVALID_GLOBAL_CONDITION_KEY",
                    format!("The condition key {key} does not exist. Use a valid condition key."),
                    vec![loc],
                );
                return;
            };
            t.as_str()
        } else if cat.service_exists(prefix) {
            let Some((_, t)) = cat.service_key(key) else {
                let loc = self.key_at(op_path, k);
                self.push(
                    FindingType::Error,
                    "INVALID_SERVICE_CONDITION_KEY",
                    format!("The condition key {key} does not exist in the service {prefix}. Use a valid condition key."),
                    vec![loc],
                );
                return;
            };
            t.as_str()
        } else {
            return;
        };
        if set == SetOp::ForAll && !typ.starts_with("ArrayOf") {
            let loc = self.key_at(op_path, k);
            self.push(
                FindingType::SecurityWarning,
                "FOR_ALL_VALUES_WITH_SINGLE_VALUED_KEY",
                format!("Using ForAllValues qualifier with the single-valued condition key {key} can be overly permissive. We recommend that you remove ForAllValues:."),
                vec![loc],
            );
        }
    }

    fn condition_values(&mut self, op_path: &[PathElement], op: &str, base: Base, k: &Member) {
        let kp = with(op_path, value(&k.key));
        let values: Vec<(Path, &Node)> = match &k.value.v {
            Val::Arr(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (with(&kp, PathElement::Index(i)), n))
                .collect(),
            _ => vec![(kp, &k.value)],
        };
        for (p, n) in values {
            self.condition_value(p, n, op, base);
        }
    }

    fn condition_value(&mut self, p: Path, n: &Node, op: &str, base: Base) {
        let text = match &n.v {
            Val::Str(s) => s.clone(),
            Val::Num(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
            _ => {
                self.mismatch(p, n, "String");
                return;
            }
        };
        if text.contains("${") {
            return;
        }
        let expected = match base {
            Base::NumEq | Base::NumLt | Base::NumLe | Base::NumGt | Base::NumGe => {
                (text.trim().parse::<f64>().is_err()).then_some("Number")
            }
            Base::DateEq | Base::DateLt | Base::DateLe | Base::DateGt | Base::DateGe => {
                crate::date::parse_date(&text).is_none().then_some("Date")
            }
            Base::Bool | Base::Null => (!text.eq_ignore_ascii_case("true")
                && !text.eq_ignore_ascii_case("false"))
            .then_some("Boolean"),
            Base::Ip => IpNet::parse(&text).is_none().then_some("IPAddress"),
            _ => None,
        };
        if let Some(t) = expected {
            let loc = self.at(p, n);
            self.push(
                FindingType::Error,
                "DATA_TYPE_MISMATCH",
                format!("The text does not match the expected JSON data type {t}."),
                vec![loc],
            );
            return;
        }
        let lower = op.to_ascii_lowercase();
        let plain_string = matches!(base, Base::Str | Base::StrIc);
        if plain_string && !lower.contains("like") && text.contains(['*', '?']) {
            let loc = self.at(p.clone(), n);
            self.push(
                FindingType::Warning,
                "WILDCARD_WITHOUT_LIKE_OPERATOR",
                format!("Your condition value includes a * or ? character. If you meant to use a wildcard (*, ?), update the condition operator to include Like ({}).", op.replace("Equals", "Like")),
                vec![loc],
            );
        }
        if base == Base::Ip
            && let Some(better) = canonical_cidr(&text)
        {
            let loc = self.at(p, n);
            self.push(
                FindingType::Suggestion,
                "IMPROVE_IP_RANGE",
                format!("The non-zero bits in the IP address after the masked bits are ignored. Replace address with {better}."),
                vec![loc],
            );
        }
    }

    fn pass_role(
        &mut self,
        path: &[PathElement],
        st: &Node,
        actions: &[Item],
        resources: &(Vec<Item>, bool),
    ) {
        let (res, not_resource) = resources;
        let star = res
            .iter()
            .find(|r| r.text == "*" || r.text.ends_with(":*") || r.text.ends_with(":role/*"));
        for (target, slr) in [
            ("iam:passrole", false),
            ("iam:createservicelinkedrole", true),
        ] {
            let Some(a) = actions
                .iter()
                .find(|a| Glob::new(&a.text.to_ascii_lowercase()).matches(target))
            else {
                continue;
            };
            let wild = a.text.contains(['*', '?']);
            let (code, kind, details) = match (slr, *not_resource, star.is_some(), wild) {
                (false, true, _, _) => (
                    "PASS_ROLE_WITH_NOT_RESOURCE",
                    FindingType::SecurityWarning,
                    "Using the iam:PassRole action with NotResource can be overly permissive because it can allow iam:PassRole permission on unintended resources. We recommend that you specify resource ARNs instead.",
                ),
                (false, _, true, true) => (
                    "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE",
                    FindingType::SecurityWarning,
                    "Using wildcards (*) in the action and the resource can be overly permissive because it allows iam:PassRole permissions on all resources. We recommend that you specify resource ARNs or add the iam:PassedToService condition key to your statement.",
                ),
                (false, _, true, false) => (
                    "PASS_ROLE_WITH_STAR_IN_RESOURCE",
                    FindingType::SecurityWarning,
                    "Using the iam:PassRole action with wildcards (*) in the resource can be overly permissive because it allows iam:PassRole permissions on multiple resources. We recommend that you specify resource ARNs or add the iam:PassedToService condition key to your statement.",
                ),
                (true, true, _, _) => (
                    "CREATE_SLR_WITH_NOT_RESOURCE",
                    FindingType::Warning,
                    "Using the iam:CreateServiceLinkedRole action with NotResource can allow creation of unintended service-linked roles for multiple resources. We recommend that you specify resource ARNs instead.",
                ),
                (true, _, true, true) => (
                    "CREATE_SLR_WITH_STAR_IN_ACTION_AND_RESOURCE",
                    FindingType::Warning,
                    "Using wildcards (*) in the action and the resource can allow creation of unintended service-linked roles because it allows iam:CreateServiceLinkedRole permission on all resources. We recommend that you specify resource ARNs instead.",
                ),
                (true, _, true, false) => (
                    "CREATE_SLR_WITH_STAR_IN_RESOURCE",
                    FindingType::Warning,
                    "Using the iam:CreateServiceLinkedRole action with wildcards (*) in the resource can allow creation of unintended service-linked roles because it allows iam:CreateServiceLinkedRole permission on all resources. We recommend that you specify resource ARNs instead.",
                ),
                _ => continue,
            };
            let mut locs = vec![self.at(a.path.clone(), a.node)];
            if let Some(r) = star {
                locs.push(self.at(r.path.clone(), r.node));
            } else if let Some(m) = st.get("NotResource") {
                locs.push(self.key_at(path, m));
            }
            self.push(kind, code, details.into(), locs);
        }
    }

    fn sids(&mut self, statements: &[(Path, &Node)]) {
        let mut seen: Vec<&str> = Vec::new();
        for (path, st) in statements {
            let Some(m) = st.get("Sid") else { continue };
            let sp = with(path, value("Sid"));
            let Some(sid) = m.value.as_str() else {
                self.mismatch(sp, &m.value, "String");
                continue;
            };
            if sid.is_empty() {
                let loc = self.at(sp, &m.value);
                self.push(
                    FindingType::Suggestion,
                    "EMPTY_SID_VALUE",
                    "Add a value to the empty string in the Sid element.".into(),
                    vec![loc],
                );
                continue;
            }
            if seen.contains(&sid) {
                let (kind, code) = if self.ty == LintPolicyType::Identity {
                    (FindingType::Warning, "UNIQUE_SIDS_RECOMMENDED")
                } else {
                    (FindingType::Error, "UNIQUE_SIDS_REQUIRED")
                };
                let loc = self.at(sp, &m.value);
                let details = if kind == FindingType::Error {
                    "Duplicate statement IDs (SIDs) in a single policy are not supported for this policy type. Update the SID values."
                } else {
                    "We recommend that you use statement IDs (SIDs) that are unique to the policy. Update the SID values."
                };
                self.push(kind, code, details.into(), vec![loc]);
            }
            seen.push(sid);
        }
    }

    fn redundant_statements(&mut self, statements: &[(Path, &Node)]) {
        let bodies: Vec<Vec<(String, Val)>> = statements
            .iter()
            .map(|(_, st)| match &st.v {
                Val::Obj(ms) => {
                    let mut b: Vec<(String, Val)> = ms
                        .iter()
                        .filter(|m| m.key != "Sid")
                        .map(|m| (m.key.clone(), strip(&m.value)))
                        .collect();
                    b.sort_by(|x, y| x.0.cmp(&y.0));
                    b
                }
                _ => Vec::new(),
            })
            .collect();
        for (j, (path, st)) in statements.iter().enumerate() {
            let Some(bj) = bodies.get(j) else { continue };
            if bj.is_empty() || !bodies.iter().take(j).any(|bi| bi == bj) {
                continue;
            }
            let loc = self.at(path.clone(), st);
            self.push(
                FindingType::Suggestion,
                "REDUNDANT_STATEMENT",
                "The statement is redundant because it provides identical permissions to another statement. Remove the redundant statement.".into(),
                vec![loc],
            );
        }
    }
}

/// A value without positions, to compare statements by content.
fn strip(n: &Node) -> Val {
    match &n.v {
        Val::Arr(items) => Val::Arr(
            items
                .iter()
                .map(|i| Node {
                    start: 0,
                    end: 0,
                    v: strip(i),
                })
                .collect(),
        ),
        Val::Obj(ms) => Val::Obj(
            ms.iter()
                .map(|m| Member {
                    key: m.key.clone(),
                    key_start: 0,
                    key_end: 0,
                    value: Node {
                        start: 0,
                        end: 0,
                        v: strip(&m.value),
                    },
                })
                .collect(),
        ),
        v => v.clone(),
    }
}

/// `10.0.0.1/16` → `Some("10.0.0.0/16")`: a CIDR whose host bits are set.
fn canonical_cidr(text: &str) -> Option<String> {
    let (addr, bits) = text.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            let v = u32::from(a);
            (v & !mask != 0).then(|| format!("{}/{bits}", std::net::Ipv4Addr::from(v & mask)))
        }
        std::net::IpAddr::V6(a) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            let v = u128::from(a);
            (v & !mask != 0).then(|| format!("{}/{bits}", std::net::Ipv6Addr::from(v & mask)))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
