//! One test per issue code. Example policies follow the "IAM policy validation
//! check reference" page of the IAM User Guide
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html)
//! where it shows one.

use super::*;
use proptest::prelude::*;

const ID: LintPolicyType = LintPolicyType::Identity;
const RES: LintPolicyType = LintPolicyType::Resource;

fn run(doc: &str, ty: LintPolicyType) -> Vec<Finding> {
    validate(doc, ty, None)
}

fn codes(doc: &str, ty: LintPolicyType) -> Vec<String> {
    run(doc, ty).into_iter().map(|f| f.issue_code).collect()
}

fn find(doc: &str, ty: LintPolicyType, code: &str) -> Finding {
    run(doc, ty)
        .into_iter()
        .find(|f| f.issue_code == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", codes(doc, ty)))
}

fn stmt(body: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{body}]}}"#)
}

fn pos(line: u32, column: u32, offset: u32) -> TextPos {
    TextPos {
        line,
        column,
        offset,
    }
}

fn v(s: &str) -> PathElement {
    PathElement::Value(s.into())
}

#[test]
fn a_clean_policy_has_no_findings() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":["s3:GetObject","s3:List*"],"Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"Bool":{"aws:SecureTransport":"true"}}}"#,
    );
    assert_eq!(codes(&doc, ID), Vec::<String>::new());
}

#[test]
fn json_syntax_error_points_at_the_error() {
    let doc = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n}";
    let f = find(doc, ID, "JSON_SYNTAX_ERROR");
    assert_eq!(f.finding_type, FindingType::Error);
    assert_eq!(f.locations[0].span.start, pos(4, 0, 46));
    assert_eq!(
        f.finding_details,
        "Fix the JSON syntax error at index 46 line 4 column 0."
    );
    assert!(f.learn_more_link.ends_with(
        "access-analyzer-reference-policy-checks.html#access-analyzer-reference-policy-checks-error-json-syntax-error"
    ));
}

#[test]
fn missing_version_is_a_general_warning() {
    let doc = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    let f = find(doc, ID, "MISSING_VERSION");
    assert_eq!(f.finding_type, FindingType::Warning);
    assert!(
        f.learn_more_link
            .ends_with("-general-warning-missing-version")
    );
}

#[test]
fn invalid_version_is_located_on_its_value() {
    let doc = r#"{"Version":"2012-10-18","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    let f = find(doc, ID, "INVALID_VERSION");
    assert_eq!(f.locations[0].path, vec![v("Version")]);
    assert_eq!(f.locations[0].span.start, pos(1, 11, 11));
    assert_eq!(f.locations[0].span.end, pos(1, 23, 23));
}

#[test]
fn invalid_and_missing_effect() {
    let doc = stmt(r#"{"Effect":"allow","Action":"s3:GetObject","Resource":"*"}"#);
    let f = find(&doc, ID, "INVALID_EFFECT");
    assert_eq!(
        f.locations[0].path,
        vec![v("Statement"), PathElement::Index(0), v("Effect")]
    );
    // `{"Version":"2012-10-17","Statement":[{"Effect":` is 47 characters.
    assert_eq!(f.locations[0].span.start, pos(1, 47, 47));
    let doc = stmt(r#"{"Action":"s3:GetObject","Resource":"*"}"#);
    let f = find(&doc, ID, "MISSING_EFFECT");
    assert_eq!(
        f.locations[0].path,
        vec![v("Statement"), PathElement::Index(0)]
    );
    assert_eq!(f.locations[0].span.start, pos(1, 37, 37));
}

#[test]
fn missing_action_and_resource() {
    let doc = stmt(r#"{"Effect":"Allow"}"#);
    let got = codes(&doc, ID);
    assert!(got.contains(&"MISSING_ACTION".into()));
    assert!(got.contains(&"MISSING_RESOURCE".into()));
    // A role trust policy has no Resource.
    let trust = stmt(
        r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}"#,
    );
    assert_eq!(
        validate(&trust, RES, Some("AWS::IAM::AssumeRolePolicyDocument")),
        vec![]
    );
}

#[test]
fn missing_principal_in_a_resource_policy_and_principal_in_an_identity_policy() {
    let doc = stmt(r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#);
    let f = find(&doc, RES, "MISSING_PRINCIPAL");
    assert_eq!(f.finding_type, FindingType::Error);
    let doc = stmt(r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}"#);
    let f = find(&doc, ID, "UNSUPPORTED_PRINCIPAL");
    assert_eq!(
        f.locations[0].path,
        vec![
            v("Statement"),
            PathElement::Index(0),
            PathElement::Key("Principal".into())
        ]
    );
}

#[test]
fn invalid_action_and_service() {
    let doc = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\n    \"Effect\": \"Allow\",\n    \"Action\": [\"s3:GetObject\", \"s3:GetObjekt\", \"s4:GetObject\"],\n    \"Resource\": \"*\"\n  }]\n}";
    let f = find(doc, ID, "INVALID_ACTION");
    assert_eq!(f.finding_details, "The action s3:GetObjekt does not exist.");
    assert_eq!(
        f.locations[0].path,
        vec![
            v("Statement"),
            PathElement::Index(0),
            v("Action"),
            PathElement::Index(1)
        ]
    );
    assert_eq!(f.locations[0].span.start, pos(5, 31, 101));
    assert_eq!(f.locations[0].span.end, pos(5, 45, 115));
    let f = find(doc, ID, "INVALID_SERVICE");
    assert_eq!(f.finding_details, "The service s4 does not exist.");
    // A wildcard that matches nothing is an invalid action too.
    assert!(
        codes(
            &stmt(r#"{"Effect":"Allow","Action":"s3:Frobnicate*","Resource":"*"}"#),
            ID
        )
        .contains(&"INVALID_ACTION".into())
    );
}

#[test]
fn invalid_condition_operator() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEqualz":{"aws:username":"a"}}}"#,
    );
    let f = find(&doc, ID, "INVALID_CONDITION_OPERATOR");
    assert_eq!(
        f.locations[0].path,
        vec![
            v("Statement"),
            PathElement::Index(0),
            v("Condition"),
            PathElement::Key("StringEqualz".into())
        ]
    );
}

#[test]
fn unknown_global_and_service_condition_keys() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:SourceIpp":"a","s3:nosuch":"b","aws:PrincipalTag/team":"c","s3:prefix":"d"}}}"#,
    );
    let got = codes(&doc, ID);
    assert_eq!(
        got,
        vec![
            "INVALID_GLOBAL_CONDITION_KEY",
            "INVALID_SERVICE_CONDITION_KEY"
        ]
    );
}

#[test]
fn data_type_mismatches_in_conditions() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"ten"},"Bool":{"aws:SecureTransport":"yes"},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","10.0.0.300/32"]},"DateGreaterThan":{"aws:CurrentTime":"yesterday"}}}"#,
    );
    let got: Vec<String> = run(&doc, ID)
        .into_iter()
        .filter(|f| f.issue_code == "DATA_TYPE_MISMATCH")
        .map(|f| f.finding_details)
        .collect();
    assert_eq!(
        got,
        [
            "The text does not match the expected JSON data type Number.",
            "The text does not match the expected JSON data type Boolean.",
            "The text does not match the expected JSON data type IPAddress.",
            "The text does not match the expected JSON data type Date.",
        ]
    );
    let f = find(&doc, ID, "DATA_TYPE_MISMATCH");
    assert_eq!(
        f.locations[0].path,
        vec![
            v("Statement"),
            PathElement::Index(0),
            v("Condition"),
            v("NumericLessThan"),
            v("s3:max-keys")
        ]
    );
}

#[test]
fn duplicate_sids_required_or_recommended_by_policy_type() {
    let body = r#"{"Sid":"A","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},{"Sid":"A","Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*"}"#;
    let f = find(&stmt(body), RES, "UNIQUE_SIDS_REQUIRED");
    assert_eq!(f.finding_type, FindingType::Error);
    assert_eq!(
        f.locations[0].path,
        vec![v("Statement"), PathElement::Index(1), v("Sid")]
    );
    let f = find(
        &stmt(body),
        LintPolicyType::ServiceControl,
        "UNIQUE_SIDS_REQUIRED",
    );
    assert_eq!(f.finding_type, FindingType::Error);
    let f = find(&stmt(body), ID, "UNIQUE_SIDS_RECOMMENDED");
    assert_eq!(f.finding_type, FindingType::Warning);
}

#[test]
fn pass_role_checks() {
    // The check reference's example: iam:PassRole on "*".
    let doc = stmt(r#"{"Effect":"Allow","Action":"iam:PassRole","Resource":"*"}"#);
    let f = find(&doc, ID, "PASS_ROLE_WITH_STAR_IN_RESOURCE");
    assert_eq!(f.finding_type, FindingType::SecurityWarning);
    assert_eq!(f.locations.len(), 2);
    assert!(
        f.learn_more_link
            .ends_with("-security-warning-pass-role-with-star-in-resource")
    );
    let doc = stmt(r#"{"Effect":"Allow","Action":"iam:*","Resource":"*"}"#);
    assert!(codes(&doc, ID).contains(&"PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE".into()));
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"iam:PassRole","NotResource":"arn:aws:iam::111122223333:role/x"}"#,
    );
    assert!(codes(&doc, ID).contains(&"PASS_ROLE_WITH_NOT_RESOURCE".into()));
    let doc = stmt(r#"{"Effect":"Deny","Action":"iam:PassRole","Resource":"*"}"#);
    assert_eq!(codes(&doc, ID), Vec::<String>::new());
}

#[test]
fn allow_with_not_principal() {
    let doc = stmt(
        r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#,
    );
    let f = find(&doc, RES, "ALLOW_WITH_NOT_PRINCIPAL");
    assert_eq!(f.finding_type, FindingType::SecurityWarning);
}

#[test]
fn for_all_values_with_a_single_valued_key() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:username":["a","b"],"aws:TagKeys":["x"]}}}"#,
    );
    let got = codes(&doc, ID);
    assert_eq!(got, vec!["FOR_ALL_VALUES_WITH_SINGLE_VALUED_KEY"]);
}

#[test]
fn create_slr_with_star_in_resource() {
    let doc = stmt(r#"{"Effect":"Allow","Action":"iam:CreateServiceLinkedRole","Resource":"*"}"#);
    let f = find(&doc, ID, "CREATE_SLR_WITH_STAR_IN_RESOURCE");
    assert_eq!(f.finding_type, FindingType::Warning);
}

#[test]
fn wildcard_without_like_operator() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:username":"dev-*"}}}"#,
    );
    let f = find(&doc, ID, "WILDCARD_WITHOUT_LIKE_OPERATOR");
    assert_eq!(f.finding_type, FindingType::Warning);
    let doc = doc.replace("StringEquals", "StringLike");
    assert_eq!(codes(&doc, ID), Vec::<String>::new());
}

#[test]
fn identity_policy_size_quota() {
    let actions: Vec<String> = (0..700).map(|_| "\"s3:GetObject\"".to_string()).collect();
    let doc = stmt(&format!(
        r#"{{"Effect":"Allow","Action":[{}],"Resource":"*"}}"#,
        actions.join(",")
    ));
    assert!(codes(&doc, ID).contains(&"POLICY_SIZE_EXCEEDS_IDENTITY_POLICY_QUOTA".into()));
    assert!(!codes(&doc, RES).contains(&"POLICY_SIZE_EXCEEDS_IDENTITY_POLICY_QUOTA".into()));
}

#[test]
fn redundant_action_resource_and_statement() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":["s3:Get*","s3:GetObject"],"Resource":["arn:aws:s3:::b/*","arn:aws:s3:::b/k"]},{"Effect":"Allow","Action":["s3:Get*","s3:GetObject"],"Resource":["arn:aws:s3:::b/*","arn:aws:s3:::b/k"]}"#,
    );
    let f = find(&doc, ID, "REDUNDANT_ACTION");
    assert_eq!(f.finding_type, FindingType::Suggestion);
    assert_eq!(
        f.locations[0].path,
        vec![
            v("Statement"),
            PathElement::Index(0),
            v("Action"),
            PathElement::Index(1)
        ]
    );
    assert!(codes(&doc, ID).contains(&"REDUNDANT_RESOURCE".into()));
    let f = find(&doc, ID, "REDUNDANT_STATEMENT");
    assert_eq!(
        f.locations[0].path,
        vec![v("Statement"), PathElement::Index(1)]
    );
}

#[test]
fn empty_array_action_and_empty_sid() {
    let doc = stmt(r#"{"Sid":"","Effect":"Allow","Action":[],"Resource":"*"}"#);
    let got = codes(&doc, ID);
    assert!(got.contains(&"EMPTY_ARRAY_ACTION".into()));
    assert!(got.contains(&"EMPTY_SID_VALUE".into()));
}

#[test]
fn wildcard_in_service_name() {
    let doc = stmt(r#"{"Effect":"Allow","Action":"s*:GetObject","Resource":"*"}"#);
    let f = find(&doc, ID, "WILDCARD_IN_SERVICE_NAME");
    assert_eq!(f.finding_type, FindingType::Suggestion);
}

#[test]
fn improve_ip_range() {
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["192.0.2.1/24","2001:db8::1/32"]}}}"#,
    );
    let got: Vec<String> = run(&doc, ID)
        .into_iter()
        .map(|f| f.finding_details)
        .collect();
    assert_eq!(
        got,
        [
            "The non-zero bits in the IP address after the masked bits are ignored. Replace address with 192.0.2.0/24.",
            "The non-zero bits in the IP address after the masked bits are ignored. Replace address with 2001:db8::/32.",
        ]
    );
}

#[test]
fn cheap_extras() {
    let doc = r#"{"Version":"2012-10-17","Statment":[]}"#;
    let got = codes(doc, ID);
    assert_eq!(got, vec!["INVALID_POLICY_ELEMENT", "MISSING_STATEMENT"]);
    let doc = stmt(
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"NullIfExists":{"aws:username":"true"}}}"#,
    );
    assert_eq!(codes(&doc, ID), vec!["NULL_WITH_IF_EXISTS"]);
    assert_eq!(codes("[]", ID), vec!["DATA_TYPE_MISMATCH"]);
}

#[test]
fn findings_serialize_in_aws_shape() {
    let doc = stmt(r#"{"Effect":"Allow","Action":"iam:PassRole","Resource":"*"}"#);
    let f = find(&doc, ID, "PASS_ROLE_WITH_STAR_IN_RESOURCE");
    let j = serde_json::to_value(&f).unwrap();
    assert_eq!(j["findingType"], "SECURITY_WARNING");
    assert_eq!(j["issueCode"], "PASS_ROLE_WITH_STAR_IN_RESOURCE");
    assert_eq!(
        j["locations"][0]["path"],
        serde_json::json!([{"value":"Statement"},{"index":0},{"value":"Action"}])
    );
    assert_eq!(
        j["locations"][0]["span"]["start"],
        serde_json::json!({"line":1,"column":64,"offset":64})
    );
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop_oneof![
            "[a-zA-Z0-9:*?/.${}-]{0,12}",
            Just("Allow".to_string()),
            Just("iam:PassRole".to_string()),
            Just("10.0.0.1/8".to_string()),
        ]
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("Version".to_string()),
        Just("Statement".to_string()),
        Just("Effect".to_string()),
        Just("Action".to_string()),
        Just("Resource".to_string()),
        Just("Principal".to_string()),
        Just("NotPrincipal".to_string()),
        Just("NotResource".to_string()),
        Just("Condition".to_string()),
        Just("Sid".to_string()),
        Just("ForAllValues:StringEquals".to_string()),
        Just("IpAddress".to_string()),
        Just("aws:SourceIp".to_string()),
        "[a-z:]{1,6}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn spans_inside(doc: &str, fs: &[Finding]) {
    let chars = doc.chars().count() as u32;
    let lines = doc.lines().count().max(1) as u32 + 1;
    for f in fs {
        for l in &f.locations {
            let (s, e) = (l.span.start, l.span.end);
            assert!(s.offset <= e.offset && e.offset <= chars, "{f:?}");
            assert!(s.line >= 1 && e.line <= lines, "{f:?}");
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(doc in "\\PC{0,200}") {
        for ty in [ID, RES, LintPolicyType::ServiceControl] {
            let fs = validate(&doc, ty, None);
            spans_inside(&doc, &fs);
        }
    }

    #[test]
    fn arbitrary_json_never_panics(j in arb_json(), pretty in any::<bool>()) {
        let doc = if pretty {
            serde_json::to_string_pretty(&j).unwrap()
        } else {
            j.to_string()
        };
        for ty in [ID, RES] {
            let fs = validate(&doc, ty, Some("AWS::S3::Bucket"));
            spans_inside(&doc, &fs);
            prop_assert!(fs.iter().all(|f| f.issue_code != "JSON_SYNTAX_ERROR"));
        }
    }
}
